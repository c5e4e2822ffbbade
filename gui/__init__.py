"""The operator console (PyQt6 + pyqtgraph): the whole lab at a glance, acting safely.

It talks to the system only through the bus; `ionpilot gui --config PATH` starts it. Importing
this package imports no Qt: the Qt modules load when a console is built.
"""

from ionpilot.gui.settings import GuiSettings

__all__ = ["GuiSettings"]
