"""SSH into workspaces: devyard's SSH authorities (keys.py), the per-connection sshd (server.py) and ~/.ssh/config (client_config.py)."""
