"""What the interactive figures share: can a widget be shown here?"""

from __future__ import annotations


def widgets_available() -> bool:
    """True when ipywidgets imports and this code runs inside a Jupyter kernel (so a widget can be shown)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
