"""Piper voices (VITS): the voice (voice.py), its ONNX model and the split graph's sessions
(model.py), where the graph is cut (split.py), and decode windows' context margins (windows.py)."""
