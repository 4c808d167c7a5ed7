"""Procedural street scenes for the demo dataset: layout and labels (appearance: style.py).

A pin-hole camera 1.5 m above a straight road: the road, sidewalks and the facades along
them converge on one vanishing point, and every object is sized by its depth. Objects
are painted far to near. Train ids follow classes.py (19 Cityscapes classes).
"""

from __future__ import annotations

import numpy as np

from diffseg.data.demo.canvas import SKY_DEPTH, Canvas

CAM_H = 2.0  # camera height in metres: a ground point d px below the horizon is F*CAM_H/d m away

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTO, BIKE = range(11, 19)

# Plausible real-world colours (not the label palette), jittered per instance.
_COLORS = {
    ROAD: [(0.36, 0.36, 0.38), (0.30, 0.30, 0.31), (0.42, 0.40, 0.40)],
    SIDEWALK: [(0.60, 0.58, 0.55), (0.55, 0.52, 0.50), (0.66, 0.60, 0.58)],
    BUILDING: [(0.70, 0.62, 0.50), (0.55, 0.30, 0.25), (0.50, 0.50, 0.52), (0.78, 0.74, 0.66), (0.40, 0.42, 0.48)],
    WALL: [(0.62, 0.60, 0.56), (0.50, 0.48, 0.46), (0.70, 0.66, 0.60)],
    FENCE: [(0.45, 0.33, 0.22), (0.55, 0.55, 0.55), (0.25, 0.30, 0.25)],
    POLE: [(0.35, 0.35, 0.36), (0.25, 0.25, 0.27), (0.50, 0.50, 0.50)],
    LIGHT: [(0.10, 0.10, 0.10), (0.18, 0.16, 0.10)],
    SIGN: [(0.10, 0.25, 0.65), (0.80, 0.12, 0.10), (0.92, 0.80, 0.15), (0.90, 0.90, 0.90)],
    VEG: [(0.22, 0.38, 0.12), (0.16, 0.30, 0.10), (0.30, 0.42, 0.16)],
    TERRAIN: [(0.48, 0.52, 0.25), (0.52, 0.45, 0.30), (0.42, 0.55, 0.28)],
    SKY: [(0.50, 0.68, 0.90), (0.70, 0.75, 0.82), (0.45, 0.60, 0.85)],
    PERSON: [(0.15, 0.15, 0.20), (0.60, 0.20, 0.20), (0.20, 0.30, 0.55), (0.70, 0.65, 0.55)],
    CAR: [(0.75, 0.75, 0.78), (0.10, 0.10, 0.12), (0.60, 0.08, 0.08), (0.15, 0.25, 0.55), (0.85, 0.85, 0.85)],
    TRUCK: [(0.90, 0.90, 0.88), (0.35, 0.40, 0.50), (0.60, 0.55, 0.45)],
    BUS: [(0.85, 0.70, 0.10), (0.70, 0.12, 0.10), (0.15, 0.35, 0.65), (0.90, 0.90, 0.90)],
    TRAIN: [(0.80, 0.80, 0.78), (0.75, 0.20, 0.15), (0.30, 0.45, 0.40)],
    MOTO: [(0.08, 0.08, 0.08), (0.55, 0.10, 0.10), (0.30, 0.30, 0.32)],
    BIKE: [(0.10, 0.10, 0.10), (0.20, 0.25, 0.45), (0.55, 0.12, 0.10)],
}
_SKIN = (0.75, 0.58, 0.48)
_LAMPS = [(1.0, 0.15, 0.1), (1.0, 0.75, 0.1), (0.2, 1.0, 0.4)]


_COLOR_ARRAYS = {cls: np.asarray(c, np.float32) for cls, c in _COLORS.items()}


def _color(rng: np.random.Generator, cls: int) -> np.ndarray:
    options = _COLOR_ARRAYS[cls]
    base = options[int(rng.integers(len(options)))]
    return base + 0.04 * rng.standard_normal(3, dtype=np.float32)  # render() clips the picture


class Scene:
    """Camera and road geometry of one image; `draw()` paints everything on a Canvas."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, drop: frozenset[str] = frozenset()):
        self.rng, self.h, self.w, self.drop = rng, h, w, drop
        self.yh = h * rng.uniform(0.36, 0.50)  # horizon row
        self.vx = w * rng.uniform(0.38, 0.62)  # vanishing point column
        self.focal = 0.9 * w
        self.k = rng.uniform(2.0, 3.2) / CAM_H  # road half-width (2-3.2 m) per px below the horizon
        self.walk = (rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5))  # sidewalk width / road half-width
        self.cv = Canvas.blank(h, w)

    def z_of(self, d: float) -> float:
        """Depth in metres of a ground point `d` px below the horizon."""
        return self.focal * CAM_H / max(d, 1e-3)

    def draw(self) -> Canvas:
        self.ground()
        self.skyline()
        for side in (-1, 1):
            self.side(side)
        self.objects()
        return self.cv

    # 1. ground: road wedge, sidewalks; sky above the horizon keeps its gradient colour
    def ground(self) -> None:
        cv, rng, h, w = self.cv, self.rng, self.h, self.w
        yy = np.arange(h, dtype=np.float32)[:, None] + 0.5  # [h, 1]
        xx = np.arange(w, dtype=np.float32)[None, :] + 0.5  # [1, w]
        d = np.maximum(yy - self.yh, 1e-3)  # px below the horizon
        a = np.abs(xx - self.vx) / (self.k * d)  # [h, w]: 0 at the road centre, 1 at its edge
        walk = np.where(xx < self.vx, 1 + self.walk[0], 1 + self.walk[1]).astype(np.float32)
        label = np.where(a < 1, ROAD, np.where(a < walk, SIDEWALK, TERRAIN)).astype(np.uint8)
        below = np.broadcast_to(yy > self.yh, (h, w))
        cv.label[below] = label[below]  # terrain lies behind the sidewalk until facades cover it
        colors = np.zeros((SKY + 1, 3), np.float32)
        for cls in (ROAD, SIDEWALK, TERRAIN):
            colors[cls] = _color(rng, cls)
        sky = _color(rng, SKY)
        colors[SKY] = sky
        cv.color[:] = colors[cv.label]
        top = int(np.ceil(self.yh - 0.5))  # rows above the horizon: sky, lighter towards it
        grad = np.clip(yy[:top] / self.yh, 0, 1)[..., None]
        cv.color[:top] = sky * (0.8 + 0.3 * grad)
        cv.depth[:] = np.where(below, self.focal * CAM_H / d, cv.depth)
        # lane marks: texture only, the label stays road
        dash = (cv.label == ROAD) & (a < 0.04) & ((np.log(d + 1) * 6) % 2 < 1)
        cv.color[dash] = (0.85, 0.85, 0.80)

    # 2. far skyline around the vanishing point
    def skyline(self) -> None:
        cv, rng = self.cv, self.rng
        x = 0.0
        while x < self.w:
            seg = self.w * rng.uniform(0.05, 0.15)
            cls = BUILDING if rng.random() < 0.6 else VEG
            if _KIND[cls] in self.drop:  # a dropped kind gives way to the other one, or to the sky
                cls = VEG if cls == BUILDING else BUILDING
                if _KIND[cls] in self.drop:
                    x += seg
                    continue
            top = self.yh - self.h * rng.uniform(0.02, 0.10)
            cv.rect(x, x + seg, top, self.yh + 0.5, cls, _color(rng, cls) * 0.85, 300.0)
            x += seg

    # 3. facades, trees, walls and fences along one side of the road
    def side(self, sign: int) -> None:
        rng = self.rng
        span = self.vx if sign < 0 else self.w - self.vx  # px from the vanishing point to the image edge
        outer = span * rng.uniform(1.0, 1.3)
        while outer > 3.0:
            inner = outer * rng.uniform(0.35, 0.7)
            kind = str(rng.choice(["building", "building", "building", "trees", "wall", "fence", "open"]))
            if kind in self.drop:
                kind = "open"
            self.segment(sign, inner, outer, kind)
            outer = inner

    def segment(self, sign: int, inner: float, outer: float, kind: str) -> None:
        cv, rng = self.cv, self.rng
        x0, x1 = sorted((self.vx + sign * inner, self.vx + sign * outer))
        walk = 1 + self.walk[0 if sign < 0 else 1]
        d_max = outer / (self.k * walk)
        # height in camera heights above the foot line; the box spans only what can be painted
        r = {
            "building": rng.uniform(1.5, 5.0),
            "trees": rng.uniform(1.2, 3.0),
            "wall": rng.uniform(0.3, 0.9),
            "fence": rng.uniform(0.4, 0.8),
            "open": 0.0,
        }[kind]
        b = cv.box(x0, x1, self.yh - max(r, 1.5) * 1.3 * d_max - 1, self.yh + d_max + 1)
        if b is None or kind == "open":
            return
        sl, yy, xx = b
        dx = np.abs(xx - self.vx)  # [1, w]
        d = dx / (self.k * walk)  # px below the horizon where the facade meets the sidewalk
        foot = self.yh + d
        z = float(self.focal * CAM_H / max(0.5 * (inner + outer) / (self.k * walk), 1e-3))
        if kind == "building":
            mask = (yy >= self.yh - r * d) & (yy < foot)
            cv.fill(sl, mask, BUILDING, _color(rng, BUILDING), z)
            # windows: a grid in facade coordinates (height in camera heights, depth)
            v = (foot - yy) / np.maximum(d, 1e-3)
            u = self.focal / np.maximum(dx, 1e-3) * rng.uniform(0.6, 1.2)
            win = mask & (v > 1.2) & ((v * 0.9) % 1 > 0.45) & (u % 1 > 0.45)
            cv.color[sl][win] *= 0.45
            cv.window[sl] |= win
        elif kind == "trees":
            bumps = 1 + 0.25 * np.sin(xx * rng.uniform(0.3, 0.8) + rng.uniform(0, 6))
            mask = (yy >= self.yh - r * d * bumps) & (yy < self.yh + 0.3 * d)
            cv.fill(sl, mask, VEG, _color(rng, VEG), z)
        else:
            cls = WALL if kind == "wall" else FENCE
            if rng.random() < 0.5 and "trees" not in self.drop:  # something behind it
                back = (yy >= self.yh - 1.5 * d) & (yy < foot)
                cv.fill(sl, back, VEG, _color(rng, VEG), z * 1.3)
            mask = (yy >= foot - r * d) & (yy < foot)
            if kind == "fence":  # slats: gaps show what is behind
                mask &= (xx * 0.5 + 0.2 * yy) % 2 > 0.6
            cv.fill(sl, mask, cls, _color(rng, cls), z)

    # 4. things on the road and sidewalks, far to near
    def objects(self) -> None:
        rng = self.rng
        ground = self.h - self.yh
        todo = []
        for _ in range(rng.integers(1, 5)):
            todo.append((ground * rng.uniform(0.06, 0.6), "car"))
        for kind, p in (("truck", 0.3), ("bus", 0.3), ("train", 0.15)):
            if rng.random() < p:
                todo.append((ground * rng.uniform(0.06, 0.45), kind))
        for _ in range(rng.integers(1, 4)):
            todo.append((ground * rng.uniform(0.08, 0.7), "person"))
        for _ in range(rng.integers(0, 3)):
            todo.append((ground * rng.uniform(0.08, 0.6), "rider"))
        for _ in range(rng.integers(1, 4)):
            todo.append((ground * rng.uniform(0.08, 0.6), "pole"))
        todo = [t for t in todo if t[1] not in self.drop]
        for d, kind in sorted(todo, key=lambda t: t[0]):
            getattr(self, "draw_" + kind)(d)

    def _lateral(self, d: float, on_sidewalk: bool) -> float:
        rng = self.rng
        sign = -1 if rng.random() < 0.5 else 1
        if on_sidewalk:
            walk = self.walk[0 if sign < 0 else 1]
            return self.vx + sign * self.k * d * rng.uniform(1.05, 1 + 0.9 * walk)
        return self.vx + self.k * d * rng.uniform(-0.75, 0.75)

    def _vehicle(self, d, cls, width_m, height_m, light_h=0.6) -> tuple[float, float, float]:
        m = d / CAM_H  # px per metre at this depth
        cx, foot, z = self._lateral(d, False), self.yh + d, self.z_of(d)
        col = _color(self.rng, cls)
        hw = 0.5 * width_m * m
        self.cv.rect(cx - hw, cx + hw, foot - height_m * m, foot, cls, col, z)
        for s in (-1, 1):  # tail lights / headlights
            self.cv.lights.append((cx + s * 0.7 * hw, foot - light_h * m, max(0.25 * m, 1.0), (1.0, 0.2, 0.1)))
        return cx, foot, m

    def draw_car(self, d: float) -> None:
        cv = self.cv
        m = d / CAM_H
        cx, foot, z = self._lateral(d, False), self.yh + d, self.z_of(d)
        col = _color(self.rng, CAR)
        cv.rect(cx - 0.9 * m, cx + 0.9 * m, foot - 0.95 * m, foot - 0.15 * m, CAR, col, z)  # body
        cv.rect(cx - 0.7 * m, cx + 0.7 * m, foot - 1.5 * m, foot - 0.9 * m, CAR, col * 0.9, z)  # cabin
        b = cv.box(cx - 0.6 * m, cx + 0.6 * m, foot - 1.42 * m, foot - 0.98 * m)
        if b is not None:  # rear window: dark glass, still car
            cv.color[b[0]] = (0.12, 0.14, 0.18)
        for s in (-1, 1):
            cv.rect(
                cx + s * 0.65 * m - 0.18 * m,
                cx + s * 0.65 * m + 0.18 * m,
                foot - 0.3 * m,
                foot,
                CAR,
                (0.05, 0.05, 0.05),
                z,
            )
            cv.lights.append((cx + s * 0.7 * m, foot - 0.7 * m, max(0.25 * m, 1.0), (1.0, 0.2, 0.1)))

    def draw_truck(self, d: float) -> None:
        cx, foot, m = self._vehicle(d, TRUCK, 2.5, 3.4)
        b = self.cv.box(cx - 1.25 * m, cx + 1.25 * m, foot - 0.6 * m, foot)
        if b is not None:  # dark chassis band under the cargo box
            self.cv.color[b[0]] *= 0.3

    def draw_bus(self, d: float) -> None:
        cx, foot, m = self._vehicle(d, BUS, 2.55, 3.1)
        b = self.cv.box(cx - 1.1 * m, cx + 1.1 * m, foot - 2.7 * m, foot - 1.6 * m)
        if b is not None:  # window band
            self.cv.color[b[0]] = (0.15, 0.18, 0.22)
            self.cv.window[b[0]] = True

    def draw_train(self, d: float) -> None:
        cx, foot, m = self._vehicle(d, TRAIN, 2.8, 3.8, light_h=1.0)
        b = self.cv.box(cx - 1.0 * m, cx + 1.0 * m, foot - 3.3 * m, foot - 2.2 * m)
        if b is not None:  # windscreen
            self.cv.color[b[0]] = (0.1, 0.12, 0.15)
        self.cv.rect(cx - 0.05 * m, cx + 0.05 * m, foot - 4.6 * m, foot - 3.8 * m, TRAIN, (0.2, 0.2, 0.2), self.z_of(d))

    def _person(self, cx, feet, m, cls, z, legs=True) -> None:
        cv, rng = self.cv, self.rng
        col = _color(rng, PERSON)
        if legs:
            for s in (-1, 1):
                cv.rect(
                    cx + s * 0.1 * m - 0.07 * m, cx + s * 0.1 * m + 0.07 * m, feet - 0.85 * m, feet, cls, col * 0.6, z
                )
        cv.rect(cx - 0.22 * m, cx + 0.22 * m, feet - 1.5 * m, feet - 0.8 * m, cls, col, z)
        cv.ellipse(cx, feet - 1.62 * m, 0.12 * m, 0.14 * m, cls, _SKIN, z)

    def draw_person(self, d: float) -> None:
        m = d / CAM_H
        self._person(self._lateral(d, True), self.yh + d, m, PERSON, self.z_of(d))

    def draw_rider(self, d: float) -> None:
        cv, rng = self.cv, self.rng
        m, foot, z = d / CAM_H, self.yh + d, self.z_of(d)
        cx = self._lateral(d, rng.random() < 0.4)
        moto = rng.random() < 0.4
        cls, col = (MOTO, _color(rng, MOTO)) if moto else (BIKE, _color(rng, BIKE))
        r = (0.32 if moto else 0.35) * m
        for s in (-1, 1):  # seen from the side: two wheels
            cv.ellipse(cx + s * 0.55 * m, foot - r, r, r, cls, (0.05, 0.05, 0.05), z, inner=0.0 if moto else 0.7)
        if moto:
            cv.rect(cx - 0.55 * m, cx + 0.45 * m, foot - 0.95 * m, foot - 0.35 * m, cls, col, z)
        else:
            cv.rect(cx - 0.55 * m, cx + 0.55 * m, foot - 0.62 * m, foot - 0.52 * m, cls, col, z)
            cv.rect(cx - 0.05 * m, cx + 0.05 * m, foot - 0.9 * m, foot - 0.35 * m, cls, col, z)
        self._person(cx, foot - 0.55 * m, m, RIDER, z * 0.999, legs=False)
        if moto:
            cv.lights.append((cx + 0.5 * m, foot - 0.8 * m, max(0.2 * m, 1.0), (1.0, 0.9, 0.6)))

    def draw_pole(self, d: float) -> None:
        cv, rng = self.cv, self.rng
        m, foot, z = d / CAM_H, self.yh + d, self.z_of(d)
        cx = self._lateral(d, True)
        height = rng.uniform(3.5, 6.0)
        top = foot - height * m
        cv.rect(cx - 0.08 * m, cx + 0.08 * m, top, foot, POLE, _color(rng, POLE), z)
        what = rng.choice(["sign", "light", "lamp"])
        if what == "sign":
            col, size = _color(rng, SIGN), rng.uniform(0.5, 0.8) * m
            if rng.random() < 0.5:
                cv.ellipse(cx, top + size, size * 0.5, size * 0.5, SIGN, col, z * 0.999)
            else:
                cv.rect(cx - 0.5 * size, cx + 0.5 * size, top + 0.5 * size, top + 1.4 * size, SIGN, col, z * 0.999)
        elif what == "light":
            cv.rect(cx - 0.2 * m, cx + 0.2 * m, top, top + 0.9 * m, LIGHT, _color(rng, LIGHT), z * 0.999)
            lamp = int(rng.integers(3))
            cy = top + (0.15 + 0.3 * lamp) * m
            cv.ellipse(cx, cy, 0.1 * m, 0.1 * m, LIGHT, _LAMPS[lamp], z * 0.998)
            cv.lights.append((cx, cy, max(0.35 * m, 1.0), _LAMPS[lamp]))
        else:  # street lamp: pole only, but it glows at night
            cv.lights.append((cx, top, max(0.8 * m, 1.5), (1.0, 0.85, 0.55)))


# What a scene can leave out (`drop`): facades and what stands on the street; the road, sidewalks,
# terrain and sky always show. (Poles carry the traffic lights and signs.)
DROPPABLE = ("building", "trees", "wall", "fence", "car", "truck", "bus", "train", "person", "rider", "pole")
_KIND = {BUILDING: "building", VEG: "trees"}


def draw_scene(rng: np.random.Generator, h: int, w: int, drop: frozenset[str] = frozenset()) -> Canvas:
    """One random street scene of size [h, w]; `drop`: kinds of DROPPABLE it leaves out (none: the
    demo's scenes, unchanged)."""
    assert drop <= set(DROPPABLE), sorted(drop - set(DROPPABLE))
    return Scene(rng, h, w, drop).draw()


__all__ = ["DROPPABLE", "SKY_DEPTH", "draw_scene"]
