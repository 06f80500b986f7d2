"""Dims and costs as exact formulas in a file's free dims (`N`, `height`, `p2o.DynamicDimension.0`).
The base of the ONNX stage (it imports nothing of archkit): the shape engine (archkit.onnx.shapes,
.symbolic_shapes) finds shapes in these formulas, and archkit.costs counts in them.

An `Expr` is a polynomial with integer coefficients whose variables ("atoms") are the free dims
and floor terms ⌊P / d⌋ (P an Expr, d a positive integer): what a stride or an integer division
makes of a free dim. Constant results are plain ints, so everything fixed stays on the integer
fast path, and an Expr is never constant.

Canonical forms make equal formulas equal objects (and equal text, which the shape engine writes
as an ONNX dim_param so that onnx's own inference carries it along):
- ⌊(d·Q + R) / d⌋ = Q + ⌊R / d⌋ with every coefficient of R in [0, d): so ⌊(H−1)/2⌋ + 1 and
  ⌊(H+1)/2⌋ are one atom;
- ⌊(⌊X / b⌋ + c) / e⌋ = ⌊(X + c·b) / (b·e)⌋ for integers X, c: strides in a row make one atom.

Every operation checks the result's size (terms, degree, nesting, coefficient size) and raises
TooLarge beyond it: a file can square a dim thirty times, and the bound keeps that cheap.
Free dims are taken to be at least 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeGuard, Union

__all__ = ["MAX_TERMS", "Expr", "Floor", "Symbols", "TooLarge", "exact_div", "is_expr", "pretty", "symbol", "value"]

MAX_TERMS = 64  # terms of one formula
MAX_DEGREE = 12  # total degree of a monomial
MAX_NESTING = 6  # floors inside floors
MAX_BITS = 200  # coefficient size


class TooLarge(ArithmeticError):
    """A formula over the size bound: the dim it would describe stays unknown."""


Dim = Union[int, "Expr"]  # a dim, or any count made from dims: an int when constant
Atom = Union[str, "Floor"]  # a polynomial's variable: a free dim's name, or a floor term
Monomial = tuple[tuple[Atom, int], ...]  # (atom, power) pairs sorted by atom; () is the constant term
Terms = tuple[tuple[Monomial, int], ...]  # (monomial, coefficient) pairs in canonical order


class Floor:
    """⌊num / den⌋: an atom of a polynomial (built by Expr.__floordiv__, which canonicalises)."""

    __slots__ = ("den", "depth", "key", "num")

    def __init__(self, num: Expr, den: int) -> None:
        self.num, self.den = num, den
        self.key = f"floor(({num.key})/{den})"
        self.depth: int = 1 + max((a.depth for m, _ in num.terms for a, _ in m if isinstance(a, Floor)), default=0)
        if self.depth > MAX_NESTING:
            raise TooLarge("floors nested too deeply")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Floor) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def value(self, env: Mapping[str, int]) -> int:
        return value(self.num, env) // self.den


def _atom_key(a: Atom) -> str:
    return a if isinstance(a, str) else a.key


class Expr:
    """A polynomial in free dims and floor atoms, integer coefficients, never constant.
    `terms`: ((monomial, coefficient), ...) in canonical order, a monomial being ((atom, power), ...)
    sorted by atom; the empty monomial is the constant term."""

    __slots__ = ("_hash", "_key", "terms")

    def __init__(self, terms: Terms) -> None:
        self.terms = terms
        self._key: str | None = None
        self._hash = hash(terms)

    @property
    def key(self) -> str:
        """The canonical text (made when first asked: most formulas are only multiplied and summed)."""
        k = self._key
        if k is None:
            k = self._key = _key(self.terms)
        return k

    # --- construction -----------------------------------------------------------------------
    @staticmethod
    def make(d: dict[Monomial, int]) -> Dim:
        """From monomial → coefficient: an int when constant, else the canonical Expr."""
        d = {m: c for m, c in d.items() if c}
        if not d:
            return 0
        if len(d) == 1 and () in d:
            return d[()]
        if len(d) > MAX_TERMS:
            raise TooLarge("too many terms")
        for m, c in d.items():
            if c.bit_length() > MAX_BITS or sum(p for _, p in m) > MAX_DEGREE:
                raise TooLarge("coefficient or degree too large")
        terms = tuple(sorted(d.items(), key=_order))
        return Expr(terms)

    def as_dict(self) -> dict[Monomial, int]:
        return dict(self.terms)

    # --- arithmetic (with ints and Exprs) ------------------------------------------------------
    def __add__(self, other: Dim) -> Dim:
        d = self.as_dict()
        for m, c in _terms(other):
            d[m] = d.get(m, 0) + c
        return Expr.make(d)

    __radd__ = __add__

    def __neg__(self) -> Dim:
        return Expr.make({m: -c for m, c in self.terms})

    def __sub__(self, other: Dim) -> Dim:
        d = self.as_dict()
        for m, c in _terms(other):
            d[m] = d.get(m, 0) - c
        return Expr.make(d)

    def __rsub__(self, other: Dim) -> Dim:
        return (-self) + other

    def __mul__(self, other: Dim) -> Dim:
        if isinstance(other, int):
            if not other:
                return 0
            terms = tuple((m, c * other) for m, c in self.terms)  # the order is the monomials': kept
            if any(c.bit_length() > MAX_BITS for _, c in terms):
                raise TooLarge("coefficient too large")
            return Expr(terms)
        if not isinstance(other, Expr):
            return NotImplemented
        d: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = _mono_mul(m1, m2)
                d[m] = d.get(m, 0) + c1 * c2
        return Expr.make(d)

    __rmul__ = __mul__

    def __floordiv__(self, other: Dim) -> Dim:
        if not isinstance(other, int):
            if isinstance(other, Expr):
                q = exact_div(self, other)
                if q is not None:
                    return q
                raise TooLarge("division by a formula that does not divide it")
            return NotImplemented
        if other <= 0:
            raise TooLarge("division by a non-positive number")
        if other == 1:
            return self
        quotient: dict[Monomial, int] = {}
        rest: dict[Monomial, int] = {}
        for m, c in self.terms:
            whole, part = divmod(c, other)
            if whole:
                quotient[m] = whole
            if part:
                rest[m] = part
        q = Expr.make(quotient)
        r = Expr.make(rest)
        if isinstance(r, int):  # 0 <= r < other
            return q
        # ⌊(⌊X/b⌋ + c)/e⌋ = ⌊(X + c·b)/(b·e)⌋
        rt = dict(r.terms)
        c = rt.pop((), 0)
        if len(rt) == 1:
            (m, k), = rt.items()
            if k == 1 and len(m) == 1 and m[0][1] == 1 and isinstance(m[0][0], Floor):
                inner = m[0][0]
                return q + (inner.num + c * inner.den) // (inner.den * other)
        return q + Expr.make({((Floor(r, other), 1),): 1})

    def __mod__(self, other: Dim) -> Dim:
        return self - (self // other) * other

    def __pow__(self, n: int) -> Dim:
        if not isinstance(n, int) or n < 0 or n > MAX_DEGREE:
            raise TooLarge("power")
        out: Dim = 1
        for _ in range(n):
            out = self * out
        return out

    # --- comparisons: structural -------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and other._hash == self._hash and other.terms == self.terms

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return self._hash

    def __bool__(self) -> bool:
        return True  # never constant: not zero

    def __lt__(self, other: object) -> bool:
        raise TypeError("a formula has no order")

    __le__ = __gt__ = __ge__ = __lt__

    def __index__(self) -> int:
        raise TypeError("a formula is not an integer")

    def __int__(self) -> int:
        raise TypeError("a formula is not an integer")

    def __repr__(self) -> str:
        return self.key

    __str__ = __repr__

    @property
    def atoms(self) -> frozenset[str]:
        """The free dims the formula depends on (through floors too)."""
        out: set[str] = set()
        for m, _ in self.terms:
            for a, _ in m:
                out |= {a} if isinstance(a, str) else a.num.atoms
        return frozenset(out)


def _terms(x: Dim) -> Terms:
    if isinstance(x, int):
        return (((), x),) if x else ()
    if isinstance(x, Expr):
        return x.terms
    raise TypeError(f"not a dim: {x!r}")


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    if not a:
        return b
    if not b:
        return a
    d = dict(a)
    for atom, p in b:
        d[atom] = d.get(atom, 0) + p
    return tuple(sorted(d.items(), key=lambda x: _atom_key(x[0])))


def _order(item: tuple[Monomial, int]) -> tuple[int, list[tuple[str, int]]]:
    m, _ = item
    return (-sum(p for _, p in m), [(_atom_key(a), -p) for a, p in m])


def _mono_key(m: Monomial) -> str:
    return "*".join(_atom_key(a) if p == 1 else f"{_atom_key(a)}^{p}" for a, p in m)


def _key(terms: Terms) -> str:
    """Canonical text: `2*N*height+floor((width+1)/2)-3`."""
    out: list[str] = []
    for m, c in terms:
        if not m:
            body = str(abs(c))
        elif abs(c) == 1:
            body = _mono_key(m)
        else:
            body = f"{abs(c)}*{_mono_key(m)}"
        out.append(("-" if c < 0 else ("+" if out else "")) + body)
    return "".join(out)


def symbol(name: str) -> Expr:
    """The free dim `name`."""
    monomial = ((name, 1),)
    return Expr(((monomial, 1),))


def is_expr(d: object) -> TypeGuard[Expr]:
    return isinstance(d, Expr)


def exact_div(a: Dim, b: Dim, _steps: int = MAX_TERMS) -> Dim | None:
    """a / b when b divides a exactly as polynomials (what Reshape's -1 needs), else None."""
    if isinstance(b, int):
        if b == 0:
            return None
        if isinstance(a, int):
            return a // b if a % b == 0 else None
        if all(c % b == 0 for _, c in a.terms):
            return Expr.make({m: c // b for m, c in a.terms})
        return None
    if isinstance(a, int):
        return None
    if len(b.terms) == 1:
        (mb, cb), = b.terms
        out: dict[Monomial, int] = {}
        for m, c in a.terms:
            dm = dict(m)
            for atom, p in mb:
                if dm.get(atom, 0) < p:
                    return None
                dm[atom] -= p
            if c % cb:
                return None
            out[tuple(sorted(((x, p) for x, p in dm.items() if p), key=lambda x: _atom_key(x[0])))] = c // cb
        return Expr.make(out)
    # a = q·b for a q read off the leading terms: checked by multiplying back
    (ma, ca), (mb, cb) = a.terms[0], b.terms[0]
    lead = exact_div(Expr.make({ma: ca}), Expr.make({mb: cb}))
    if lead is None:
        return None
    try:
        rest = a - lead * b
    except TooLarge:
        return None
    if rest == 0:
        return lead
    more = exact_div(rest, b, _steps - 1) if not isinstance(rest, int) and _steps > 0 else None
    return None if more is None else lead + more


def value(d: Dim, env: Mapping[str, int]) -> int:
    """The formula's value with every free dim given in `env`."""
    if isinstance(d, int):
        return d
    total = 0
    for m, c in d.terms:
        v = c
        for a, p in m:
            x = env[a] if isinstance(a, str) else a.value(env)
            v *= x ** p
        total += v
    return total


def pretty(d: Dim, name: Callable[[str], str] = str) -> str:
    """For people: thousands separators, `·` for products, ⌊⌋ for floors: `4,089,184,256·N`.
    `name` renders a free dim's name (archkit.render.escape.md, for markdown: names come from the file)."""
    if isinstance(d, int):
        return f"{d:,}"
    out: list[str] = []
    for m, c in d.terms:
        factors = [_pretty_atom(a, name) + (_superscript(p) if p > 1 else "") for a, p in m]
        if not m:
            body = f"{abs(c):,}"
        elif abs(c) == 1:
            body = "·".join(factors)
        else:
            body = f"{abs(c):,}·" + "·".join(factors)
        sign = (" − " if c < 0 else " + ") if out else ("−" if c < 0 else "")
        out.append(sign + body)
    return "".join(out)


def _pretty_atom(a: Atom, name: Callable[[str], str]) -> str:
    if isinstance(a, str):
        return name(a)
    inner = pretty(a.num, name)
    return f"⌊{inner}/{a.den}⌋" if len(a.num.terms) == 1 and "·" not in inner else f"⌊({inner})/{a.den}⌋"


_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _superscript(p: int) -> str:
    return str(p).translate(_SUP)


class Symbols:
    """One build's formulas by their canonical text, which the shape engine writes as ONNX
    dim_params: the free dims themselves, and every formula made from them since."""

    def __init__(self, names: Iterable[str]) -> None:
        self.exprs: dict[str, Expr] = {n: symbol(n) for n in names}

    def get(self, name: str) -> Expr | None:
        return self.exprs.get(name)

    def name(self, e: Expr) -> str:
        self.exprs.setdefault(e.key, e)
        return e.key

    def __bool__(self) -> bool:
        return bool(self.exprs)
