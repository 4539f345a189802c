"""pubquiz-engine: a standalone realtime engine for live quizzes.

Layers, and the directions they may import (see docs/architecture.md):
``protocol`` and ``game`` are pure; ``store`` and ``snapshot`` do I/O and never import ``server``;
``server`` drives them; ``client`` and ``cli`` sit on top.
"""

__version__ = "0.1.0"
