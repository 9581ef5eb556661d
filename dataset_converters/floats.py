r"""Feature values as decimal text: the shortest string that reads back to the same value, or N digits."""

import numpy as np


def _exponent10(a):
    r"""``floor(log10(a))`` of positive doubles, exact (the float log can be off by one at powers of ten)."""
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(a)).astype(np.int64)
    e += a >= 10.0 ** (e + 1)
    e -= a < 10.0 ** e
    return e


def _shortest_digits(flat):
    r"""Per value of a float16/float32 array: the fewest significant digits that read back exactly.

    The p-digit decimal ``m * 10**q`` nearest each value is tested in bulk, p found by bisection
    (reading back is monotone in p). For |q| <= 22 the double ``m / 10**-q`` (or ``m * 10**q``) is
    exactly what ``float(str)`` returns (both operands are exact doubles and IEEE arithmetic rounds
    once), so "reads back" is decided exactly, along RecBole's path (str -> float64 -> float32).
    The rare values needing a larger |q| (|value| beyond about 1e+/-13) are settled one by one.
    """
    dt = flat.dtype
    maxp = 5 if dt == np.float16 else 9
    x = flat.astype(np.float64)
    ax = np.abs(x)
    p = np.full(x.shape, maxp, dtype=np.int64)
    nz = ax > 0
    p[~nz] = 1
    idx = np.nonzero(nz)[0]
    if len(idx) == 0:
        return p
    a, target = ax[idx], flat[idx]
    e = _exponent10(a)
    sign = np.sign(x[idx])
    lo = np.ones(len(idx), dtype=np.int64)
    hi = np.full(len(idx), maxp, dtype=np.int64)
    slow = np.zeros(len(idx), dtype=bool)
    while True:
        act = np.nonzero(lo < hi)[0]
        if len(act) == 0:
            break
        mid = (lo[act] + hi[act]) // 2
        q = e[act] - mid + 1
        in_range = np.abs(q) <= 22
        slow[act[~in_range]] = True
        pow_ = 10.0 ** np.abs(np.where(in_range, q, 0))
        aa = a[act]
        with np.errstate(over="ignore", invalid="ignore"):
            m = np.rint(np.where(q >= 0, aa / pow_, aa * pow_))
            cand = sign[act] * np.where(q >= 0, m * pow_, m / pow_)
            good = in_range & (cand.astype(dt) == target[act])
            if dt == np.float16:  # RecBole holds float32: the value must also survive float32 -> float16
                good &= cand.astype(np.float32).astype(np.float16) == target[act]
        hi[act[good]] = mid[good]
        lo[act[~good]] = mid[~good] + 1
    p[idx] = hi
    for k in np.nonzero(slow)[0].tolist():  # settle exactly with the parser itself
        v = x[idx[k]]
        for digits in range(1, maxp + 1):
            r = float("%.*e" % (digits - 1, v))
            if np.float32(r).astype(dt) == flat[idx[k]] and np.array(r).astype(dt) == flat[idx[k]]:
                p[idx[k]] = digits
                break
    return p


def format_values(block, precision=None):
    r"""Decimal strings of a 2-D float16/float32 block, one list of strings per row.

    Default: the shortest string that reads back to the same value in the block's dtype (verified by
    parsing every string back); ``precision``: that many significant digits.
    """
    flat = block.ravel()
    x = flat.astype(np.float64)
    if precision:
        strs = list(map("%.*g".__mod__, zip([int(precision)] * len(x), x.tolist())))
    else:
        p = _shortest_digits(flat)
        # positional (2.584, 0.0003357, 100) for moderate magnitudes, scientific (1e-45) otherwise
        ax = np.abs(x)
        e = np.zeros(len(x), dtype=np.int64)
        nz = ax > 0
        e[nz] = _exponent10(ax[nz])
        positional = (e >= -5) & (e <= np.maximum(p - 1, 6))
        arg = np.where(positional, np.maximum(0, p - 1 - e), p - 1).tolist()
        fmts = np.where(positional, "%.*f", "%.*e").tolist()
        strs = [f % (a, v) for f, a, v in zip(fmts, arg, x.tolist())]
    if not precision:
        # belt and braces: parse back and lengthen the few that do not round-trip
        back = np.array(strs, dtype=np.float64)
        bad = np.nonzero((back.astype(np.float32).astype(block.dtype) != flat) | (back.astype(block.dtype) != flat))[0]
        for k in bad.tolist():
            for d in range(int(p[k]) + 1, 18):
                s = "%.*g" % (d, x[k])
                v = float(s)
                if np.float32(v).astype(block.dtype) == flat[k] and np.array(v).astype(block.dtype) == flat[k]:
                    break
            strs[k] = s
    d = block.shape[1]
    return [" ".join(strs[r * d:(r + 1) * d]) for r in range(block.shape[0])]
