"""Figures and animations the lectures and the command line draw.

Nothing in the core package imports this module; it may import anything.
"""

from mbrl_course.viz.animation import animate_frames, save_gif
from mbrl_course.viz.curves import plot_learning_curve, plot_learning_curves, read_returns_csv

__all__ = ["animate_frames", "save_gif", "plot_learning_curve", "plot_learning_curves", "read_returns_csv"]
