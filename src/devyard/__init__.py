"""devyard: self-hosted VS Code in the browser for teams."""

__version__ = "0.1.0"
__all__ = ["__version__"]
