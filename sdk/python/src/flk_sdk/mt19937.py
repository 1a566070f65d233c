"""numpy's legacy ``RandomState`` normal sampler in pure Python, bit for bit.

The field's reference agent seeds its random directions with ``np.random.seed(seed)`` and draws
them with ``np.random.randn(3)``. That is MT19937 seeded by ``init_genrand`` (seeds 0..2^32-1),
53-bit doubles from two 32-bit outputs (``(a >> 5) * 2^26 + (b >> 6)) / 2^53``), and the
Marsaglia polar method whose second value is cached for the next call (numpy's
``legacy_gauss``). numpy is not a dependency; the tests cross-check against it when present.
"""

from __future__ import annotations

import math

_N = 624
_M = 397
_MATRIX_A = 0x9908B0DF
_UPPER = 0x80000000
_LOWER = 0x7FFFFFFF


class LegacyRandomState:
    """``numpy.random.RandomState(seed)`` restricted to ``random_sample`` and ``randn``."""

    def __init__(self, seed: int) -> None:
        if not 0 <= seed <= 0xFFFFFFFF:
            raise ValueError("seed must be between 0 and 2**32 - 1")
        mt = [0] * _N
        mt[0] = seed
        for i in range(1, _N):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self._mt = mt
        self._pos = _N
        self._gauss: float | None = None

    def _twist(self) -> None:
        mt = self._mt
        for i in range(_N):
            y = (mt[i] & _UPPER) | (mt[(i + 1) % _N] & _LOWER)
            mt[i] = mt[(i + _M) % _N] ^ (y >> 1) ^ (_MATRIX_A if y & 1 else 0)
        self._pos = 0

    def next_uint32(self) -> int:
        if self._pos >= _N:
            self._twist()
        y = self._mt[self._pos]
        self._pos += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y

    def random_sample(self) -> float:
        """A double in [0, 1) with 53 random bits (numpy's ``legacy_double``)."""
        a = self.next_uint32() >> 5
        b = self.next_uint32() >> 6
        return (a * 67108864.0 + b) / 9007199254740992.0

    def gauss(self) -> float:
        """One standard normal deviate (numpy's ``legacy_gauss``)."""
        if self._gauss is not None:
            g, self._gauss = self._gauss, None
            return g
        while True:
            x1 = 2.0 * self.random_sample() - 1.0
            x2 = 2.0 * self.random_sample() - 1.0
            r2 = x1 * x1 + x2 * x2
            if r2 < 1.0 and r2 != 0.0:
                break
        f = math.sqrt(-2.0 * math.log(r2) / r2)
        self._gauss = f * x1
        return f * x2

    def randn(self, n: int) -> list[float]:
        """``n`` standard normal deviates, as ``np.random.randn(n)``."""
        return [self.gauss() for _ in range(n)]
