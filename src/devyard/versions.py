"""The pinned versions of what devyard runs: code-server and the Node it runs on.

A bottom-layer module of its own, so that settings (the Kubernetes engine image) and the engine's
installer (devyard.engine.install) pin the same code-server without config importing the engine.
"""

from __future__ import annotations

CODE_SERVER_VERSION = "4.139.1"
NODE_VERSION = "24.21.0"
