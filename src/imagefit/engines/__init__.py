"""CPU inference back ends behind :class:`imagefit.engine.Engine`: CPU feature detection and runners."""
