"""The kubernetes backend: engines as pods, one volume, service and network policy per workspace (backend.py).

backend.py (and kubernetes_asyncio with it) is imported only when the backend is chosen: a local
manager never carries the client's thousands of model classes.
"""
