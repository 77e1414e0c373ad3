"""Regenerate the built-in pose presets (``<name>.json`` + ``<name>.png``) in this folder.

    python assets/poses/make_presets.py            # writes every preset and its preview
    python assets/poses/make_presets.py --check    # exits 1 if a JSON differs from what it would write

The JSON files are the source of truth that ships; this script is how they were made. Each person is
a parametric 2D skeleton built from adult proportions (standing height H = 1):

- head: 1/7.5 H tall; eyes at its middle; ears ~0.09 H apart; the nose tip 0.02 H below the eyes;
- shoulders (OpenPose's shoulder joints) 0.24 H apart, 0.18 H below the top of the head;
- trunk (shoulder line to hip joints) 0.29 H; hip joints 0.16 H apart;
- upper arm 0.186 H, forearm 0.146 H (a hanging wrist reaches the crotch, fingertips mid-thigh);
- thigh 0.245 H, shin 0.246 H, ankle 0.039 H above the sole.

A body turns (``yaw``: 0 faces the camera, 90 faces image right, 180 shows the back) by
foreshortening the shoulder and hip lines; face points are placed on a head sphere and hidden when
they turn away (a back view has no eyes or nose, and its left/right are swapped). Limbs are given
either as image-plane angles (0 = straight down, +90 = towards image right) or as a target for the
wrist/ankle (two-bone inverse kinematics), with an optional foreshortening factor.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from storymaker.domain.poses import KEYPOINT_NAMES, Person, Pose, dumps_pose, validate_pose  # noqa: E402

# Segment lengths in units of standing height.
TRUNK = 0.288  # hip-joint midpoint -> neck (shoulder-line midpoint)
NECK_TO_HEAD = 0.12  # neck -> centre of the head
SHOULDER = 0.12  # half the shoulder width
HIP = 0.08  # half the hip-joint width
UPPER_ARM = 0.186
FOREARM = 0.146
THIGH = 0.245
SHIN = 0.246
SOLE = 0.039  # ankle above the ground
KNEE_PAD = 0.03  # knee joint above the ground when kneeling

# Face points on the head: (azimuth in degrees, radius, offset below the head centre).
FACE = {
    "nose": (0.0, 0.055, 0.02),
    "right_eye": (-24.0, 0.045, 0.0),
    "left_eye": (24.0, 0.045, 0.0),
    "right_ear": (-90.0, 0.048, 0.008),
    "left_ear": (90.0, 0.048, 0.008),
}


def _dir(angle: float) -> tuple[float, float]:
    """Unit vector of an image-plane angle: 0 = down, +90 = image right, 180 = up (y grows down)."""
    a = math.radians(angle)
    return (math.sin(a), math.cos(a))


class Figure:
    """One person being built in frame pixels. ``h`` is the standing height in pixels."""

    def __init__(self, x: float, y: float, h: float, *, yaw: float = 0.0, lean: float = 0.0,
                 head_yaw: float | None = None, head_tilt: float = 0.0, nod: float = 0.0):
        self.h = h
        self.yaw = yaw
        self.p: dict[str, tuple[float, float] | None] = {}
        up = _dir(180.0 + lean)  # pelvis -> neck
        across = (-up[1], up[0])  # person's right -> left for a body facing the camera
        c = math.cos(math.radians(yaw))
        pelvis = (x, y)
        neck = (x + up[0] * TRUNK * h, y + up[1] * TRUNK * h)
        self.p["neck"] = neck
        for side, sign in (("right", -1.0), ("left", 1.0)):
            self.p[f"{side}_shoulder"] = (neck[0] + sign * across[0] * SHOULDER * c * h,
                                         neck[1] + sign * across[1] * SHOULDER * c * h)
            self.p[f"{side}_hip"] = (pelvis[0] + sign * across[0] * HIP * c * h,
                                    pelvis[1] + sign * across[1] * HIP * c * h)
        head_up = _dir(180.0 + lean + head_tilt)
        head_across = (-head_up[1], head_up[0])
        centre = (neck[0] + head_up[0] * NECK_TO_HEAD * h, neck[1] + head_up[1] * NECK_TO_HEAD * h)
        hy = yaw if head_yaw is None else head_yaw
        for name, (az, radius, below) in FACE.items():
            turn = math.radians(hy + az)
            threshold = -0.35 if name.endswith("ear") else 0.1
            if math.cos(turn) <= threshold:
                self.p[name] = None  # turned away from the camera
                continue
            side = radius * math.sin(turn) * h
            down = (below + nod * 0.02) * h
            self.p[name] = (centre[0] + head_across[0] * side - head_up[0] * down,
                            centre[1] + head_across[1] * side - head_up[1] * down)

    # -- limbs ------------------------------------------------------------------------------------
    def _chain(self, root: str, mid: str, end: str, a1: float, a2: float, l1: float, l2: float,
               k1: float, k2: float) -> None:
        r = self.p[root]
        d1, d2 = _dir(a1), _dir(a2)
        m = (r[0] + d1[0] * l1 * k1 * self.h, r[1] + d1[1] * l1 * k1 * self.h)
        self.p[mid] = m
        self.p[end] = (m[0] + d2[0] * l2 * k2 * self.h, m[1] + d2[1] * l2 * k2 * self.h)

    def arm(self, side: str, upper: float, fore: float, k1: float = 1.0, k2: float = 1.0) -> "Figure":
        self._chain(f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist", upper, fore, UPPER_ARM, FOREARM, k1, k2)
        return self

    def leg(self, side: str, thigh: float, shin: float, k1: float = 1.0, k2: float = 1.0) -> "Figure":
        self._chain(f"{side}_hip", f"{side}_knee", f"{side}_ankle", thigh, shin, THIGH, SHIN, k1, k2)
        return self

    def _reach(self, root: str, mid: str, end: str, target: tuple[float, float], l1: float, l2: float,
               bend: str, k: float) -> None:
        """Two-bone IK: put ``end`` at ``target`` (or as near as the limb reaches)."""
        r = self.p[root]
        a, b = l1 * k * self.h, l2 * k * self.h
        dx, dy = target[0] - r[0], target[1] - r[1]
        dist = max(math.hypot(dx, dy), 1e-6)
        if dist >= a + b:
            ux, uy = dx / dist, dy / dist
            self.p[mid] = (r[0] + ux * a, r[1] + uy * a)
            self.p[end] = (r[0] + ux * (a + b), r[1] + uy * (a + b))
            return
        dist = max(dist, abs(a - b) + 1e-6)
        along = (a * a - b * b + dist * dist) / (2 * dist)
        off = math.sqrt(max(a * a - along * along, 0.0))
        ux, uy = dx / dist, dy / dist
        base = (r[0] + ux * along, r[1] + uy * along)
        options = [(base[0] - uy * off, base[1] + ux * off), (base[0] + uy * off, base[1] - ux * off)]
        pick = {
            "down": lambda p: p[1], "up": lambda p: -p[1], "right": lambda p: p[0], "left": lambda p: -p[0],
        }[bend]
        self.p[mid] = max(options, key=pick)
        self.p[end] = target

    def arm_to(self, side: str, target: tuple[float, float], bend: str = "down", k: float = 1.0) -> "Figure":
        self._reach(f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist", target, UPPER_ARM, FOREARM, bend, k)
        return self

    def leg_to(self, side: str, target: tuple[float, float], bend: str = "up", k: float = 1.0) -> "Figure":
        self._reach(f"{side}_hip", f"{side}_knee", f"{side}_ankle", target, THIGH, SHIN, bend, k)
        return self

    def arm_at(self, side: str, elbow: tuple[float, float], wrist: tuple[float, float]) -> "Figure":
        """Place elbow and wrist directly (limbs pointing at the camera look shorter, never longer)."""
        shoulder = self.p[f"{side}_shoulder"]
        if math.dist(shoulder, elbow) > UPPER_ARM * self.h * 1.01 or math.dist(elbow, wrist) > FOREARM * self.h * 1.01:
            raise ValueError(f"{side} arm longer than the body allows")
        self.p[f"{side}_elbow"], self.p[f"{side}_wrist"] = elbow, wrist
        return self

    # -- helpers --------------------------------------------------------------------------------
    def at(self, name: str, dx: float = 0.0, dy: float = 0.0) -> tuple[float, float]:
        """A point of this figure offset by ``(dx, dy)`` in units of its height."""
        x, y = self.p[name]
        return (x + dx * self.h, y + dy * self.h)

    def ground(self, y: float, lift: float = 0.0) -> "Figure":
        """Move the figure vertically so its lowest ankle (or kneeling knee) touches ``y``."""
        lows = []
        for name in ("right_ankle", "left_ankle"):
            if self.p.get(name) is not None:
                lows.append(self.p[name][1] + SOLE * self.h)
        for name in ("right_knee", "left_knee"):
            if self.p.get(name) is not None:
                lows.append(self.p[name][1] + KNEE_PAD * self.h)
        shift = y - lift * self.h - max(lows)
        self.p = {n: None if v is None else (v[0], v[1] + shift) for n, v in self.p.items()}
        return self

    def person(self, width: int, height: int) -> Person:
        points = []
        for name in KEYPOINT_NAMES:
            if name == "neck":
                v = self.p["neck"]
            else:
                v = self.p.get(name)
            points.append(None if v is None else (round(v[0] / width, 4), round(v[1] / height, 4)))
        missing = [n for n in KEYPOINT_NAMES if n not in self.p]
        if missing:
            raise ValueError(f"limbs not built: {missing}")
        return Person(tuple(points))


def standing(x: float, ground: float, h: float, **kw) -> Figure:
    """A figure whose pelvis sits where straight legs put it above ``ground``."""
    return Figure(x, ground - (THIGH + SHIN + SOLE) * h, h, **kw)


def relaxed_arms(f: Figure, out: float = 9.0, facing: float = 1.0) -> Figure:
    """Arms hanging, slightly away from the body (``facing`` -1 for a back view)."""
    return f.arm("right", -out * facing, -out * 0.6 * facing).arm("left", out * facing, out * 0.6 * facing)


def relaxed_legs(f: Figure, out: float = 3.0, facing: float = 1.0) -> Figure:
    return f.leg("right", -out * facing, -1.0 * facing).leg("left", out * facing, 1.0 * facing)


# -- the presets --------------------------------------------------------------------------------
# Frames: one person 512x768 (2:3), two people 768x768, three people 1024x768.
ONE = (512, 768)
TWO = (768, 768)
THREE = (1024, 768)


def _one_h() -> float:
    return 0.80 * ONE[1]


def p_standing():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h())
    relaxed_legs(relaxed_arms(f))
    return "A person standing, facing the viewer, arms relaxed.", ONE, [f]


def p_standing_arms_crossed():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h(), head_tilt=-3)
    relaxed_legs(f, out=4)
    f.arm("right", 4, 102, k1=0.85)
    f.arm("left", -4, -96, k1=0.85)
    return "Standing, facing the viewer, arms crossed over the chest.", ONE, [f]


def p_standing_hands_on_hips():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h())
    relaxed_legs(f, out=6)
    f.arm_to("right", f.at("right_hip", -0.03, -0.06), bend="left")
    f.arm_to("left", f.at("left_hip", 0.03, -0.06), bend="right")
    return "Standing, facing the viewer, hands on the hips, elbows out.", ONE, [f]


def p_walking():
    w, h = ONE
    f = Figure(w / 2, 0, _one_h(), yaw=40, lean=3, head_yaw=45)
    f.leg("left", 14, 4).leg("right", -9, -26)
    f.ground(0.93 * h)
    f.arm("left", -9, -4).arm("right", 9, 20)
    return "Walking towards the right of the frame, three-quarter view, mid-stride.", ONE, [f]


def p_running():
    w, h = ONE
    f = Figure(w / 2, 0, _one_h(), yaw=62, lean=12, head_yaw=70, head_tilt=-6)
    f.leg("right", 44, -6).leg("left", -26, -82)
    f.ground(0.93 * h)
    f.arm("right", -42, 40).arm("left", 38, 125)
    return "Running towards the right of the frame, side view, arms pumping.", ONE, [f]


def p_sitting():
    w, h = ONE
    f = Figure(0.42 * w, 0, _one_h(), yaw=30, head_yaw=20)
    f.leg("right", 62, 4, k1=0.7).leg("left", 56, -2, k1=0.7)
    f.ground(0.93 * h)
    f.arm_to("right", f.at("right_knee", -0.05, -0.03), bend="left")
    f.arm_to("left", f.at("left_knee", -0.04, -0.03), bend="down")
    return "Sitting on a chair, three-quarter view facing the viewer, hands resting on the thighs.", ONE, [f]


def p_sitting_side():
    w, h = ONE
    f = Figure(0.42 * w, 0, _one_h(), yaw=72, head_yaw=78)
    f.leg("right", 84, 2).leg("left", 88, 6)
    f.ground(0.93 * h)
    f.arm_to("right", f.at("right_knee", -0.07, -0.04), bend="down")
    f.arm_to("left", f.at("left_knee", -0.05, -0.04), bend="down")
    return "Sitting on a chair in profile, facing the right of the frame, hands on the lap.", ONE, [f]


def p_waving():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h(), head_tilt=-4)
    relaxed_legs(f)
    f.arm("right", -118, 172).arm("left", 9, 5)
    return "Standing, facing the viewer, waving with the raised right hand.", ONE, [f]


def p_pointing():
    w, h = ONE
    f = standing(0.38 * w, 0.93 * h, _one_h(), yaw=30, head_yaw=55)
    relaxed_legs(f, out=4)
    f.arm("right", -8, -4).arm("left", 84, 86)
    return "Standing in three-quarter view, pointing to the right of the frame.", ONE, [f]


def p_arms_raised():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h(), head_tilt=0, nod=-0.3)
    relaxed_legs(f, out=7)
    f.arm("right", -150, -165).arm("left", 150, 165)
    return "Standing, facing the viewer, both arms raised in a V (cheering).", ONE, [f]


def p_jumping():
    w, h = ONE
    f = Figure(w / 2, 0, 0.74 * h, nod=-0.3)
    f.leg("right", -24, -16).leg("left", 24, 16)
    f.ground(0.95 * h, lift=0.08)
    f.arm("right", -140, -160).arm("left", 140, 160)
    return "Jumping, facing the viewer: arms up, legs spread, feet off the ground.", ONE, [f]


def p_kneeling():
    w, h = ONE
    f = Figure(0.52 * w, 0, _one_h(), yaw=40, head_yaw=45)
    f.leg("right", -4, -82, k2=0.9).leg("left", 88, -2)
    f.ground(0.93 * h)
    f.arm_to("left", f.at("left_knee", -0.01, -0.04), bend="down")
    f.arm("right", -6, -2)
    return "Kneeling on the right knee, three-quarter view facing right, hand on the raised knee.", ONE, [f]


def p_back_view():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h(), yaw=180)
    relaxed_legs(relaxed_arms(f, facing=-1.0), facing=-1.0)
    return "Standing with the back to the viewer (no face points; left and right swapped).", ONE, [f]


def p_thinking():
    w, h = ONE
    f = standing(w / 2, 0.93 * h, _one_h(), yaw=15, head_tilt=6, head_yaw=20, nod=0.3)
    relaxed_legs(f, out=3)
    # The right elbow rests on the left hand; the right hand is at the chin.
    f.arm_at("left", f.at("neck", 0.09, 0.118), f.at("neck", -0.05, 0.098))
    f.arm_at("right", f.at("neck", -0.06, 0.088), f.at("nose", -0.005, 0.06))
    return "Standing, hand on the chin, the other arm across the waist (thinking).", ONE, [f]


def _two_h() -> float:
    return 0.78 * TWO[1]


def p_two_side_by_side():
    w, h = TWO
    a = standing(0.34 * w, 0.93 * h, _two_h(), yaw=-10, head_yaw=-5)
    b = standing(0.66 * w, 0.93 * h, _two_h() * 0.95, yaw=10, head_yaw=5)
    for f in (a, b):
        relaxed_legs(relaxed_arms(f))
    return "Two people standing side by side, facing the viewer.", TWO, [a, b]


def p_two_talking():
    w, h = TWO
    a = standing(0.32 * w, 0.93 * h, _two_h(), yaw=55, head_yaw=70)
    b = standing(0.68 * w, 0.93 * h, _two_h() * 0.96, yaw=-55, head_yaw=-70, head_tilt=3)
    relaxed_legs(a, out=4)
    relaxed_legs(b, out=4)
    a.arm("right", 14, 82).arm("left", 10, 8)
    b.arm("right", -8, -5)
    b.arm_to("left", b.at("left_hip", 0.03, -0.05), bend="right")
    return "Two people standing face to face, talking; the left one gestures.", TWO, [a, b]


def p_two_handshake():
    w, h = TWO
    a = standing(0.34 * w, 0.93 * h, _two_h(), yaw=50, head_yaw=65)
    b = standing(0.66 * w, 0.93 * h, _two_h() * 0.97, yaw=-50, head_yaw=-65)
    relaxed_legs(a, out=4)
    relaxed_legs(b, out=4)
    meet = ((a.p["neck"][0] + b.p["neck"][0]) / 2, a.at("right_hip", 0, -0.09)[1])
    a.arm_to("right", (meet[0] - 0.03 * a.h, meet[1]), bend="down")
    b.arm_to("right", (meet[0] + 0.03 * a.h, meet[1] + 0.005 * a.h), bend="down")
    a.arm("left", 8, 5)
    b.arm("left", 8, 5)
    return "Two people shaking right hands, facing each other.", TWO, [a, b]


def p_two_hug():
    w, h = TWO
    a = standing(0.44 * w, 0.93 * h, _two_h(), yaw=50, head_yaw=70, head_tilt=5)
    b = standing(0.58 * w, 0.93 * h, _two_h() * 0.94, yaw=-50, head_yaw=-70, head_tilt=-5)
    relaxed_legs(a, out=3)
    relaxed_legs(b, out=3)
    # A's arms over B's shoulders, B's arms round A's waist; the hands show on the far backs.
    a.arm_to("right", b.at("left_shoulder", -0.01, 0.05), bend="down")
    a.arm_to("left", b.at("left_shoulder", -0.03, 0.13), bend="down")
    b.arm_to("right", a.at("right_hip", 0.0, -0.12), bend="down")
    b.arm_to("left", a.at("right_hip", 0.02, -0.05), bend="down")
    return "Two people hugging, arms around each other.", TWO, [a, b]


def p_two_walking_together():
    w, h = TWO
    a = Figure(0.36 * w, 0, _two_h(), yaw=30, lean=3, head_yaw=40)
    b = Figure(0.62 * w, 0, _two_h() * 0.95, yaw=30, lean=3, head_yaw=10)
    a.leg("left", 13, 4).leg("right", -9, -25)
    b.leg("left", 9, 2).leg("right", -6, -18)
    a.ground(0.93 * h)
    b.ground(0.93 * h)
    a.arm("left", -10, -4).arm("right", 13, 26)
    b.arm("left", -8, -3).arm("right", 10, 20)
    return "Two people walking side by side towards the right of the frame.", TWO, [a, b]


def p_two_sitting_facing():
    w, h = TWO
    a = Figure(0.25 * w, 0, _two_h(), yaw=70, head_yaw=80)
    b = Figure(0.75 * w, 0, _two_h() * 0.95, yaw=-70, head_yaw=-80)
    a.leg("right", 84, 2).leg("left", 88, 6)
    b.leg("right", -84, -2).leg("left", -88, -6)
    a.ground(0.93 * h)
    b.ground(0.93 * h)
    a.arm_to("right", a.at("right_knee", -0.06, -0.05), bend="down")
    a.arm("left", 30, 95, k2=0.9)
    b.arm_to("left", b.at("left_knee", 0.06, -0.05), bend="down")
    b.arm("right", -30, -95, k2=0.9)
    return "Two people sitting face to face (at a table, over tea), in profile.", TWO, [a, b]


def _three_h() -> float:
    return 0.76 * THREE[1]


def p_three_standing_group():
    w, h = THREE
    a = standing(0.24 * w, 0.93 * h, _three_h() * 0.97, yaw=-20, head_yaw=-10)
    b = standing(0.50 * w, 0.91 * h, _three_h())
    c = standing(0.76 * w, 0.93 * h, _three_h() * 0.94, yaw=20, head_yaw=10)
    relaxed_legs(relaxed_arms(a))
    relaxed_legs(b, out=5)
    b.arm_to("right", b.at("right_hip", -0.03, -0.06), bend="left")
    b.arm_to("left", b.at("left_hip", 0.03, -0.06), bend="right")
    relaxed_legs(c)
    c.arm("right", 4, 102, k1=0.85).arm("left", -4, -96, k1=0.85)
    return "Three people standing in a group facing the viewer.", THREE, [a, b, c]


def p_three_walking_group():
    w, h = THREE
    people = []
    # (centre x, ground y, height scale, long stride): the middle one a step behind.
    for x, ground, scale, long_stride in ((0.24, 0.93, 0.97, True), (0.50, 0.89, 0.95, False), (0.76, 0.93, 0.92, True)):
        f = Figure(x * w, 0, _three_h() * scale, yaw=35, lean=3, head_yaw=35)
        stride = 1.0 if long_stride else 0.7
        f.leg("left", 13 * stride, 4 * stride).leg("right", -9 * stride, -25 * stride)
        f.ground(ground * h)
        f.arm("left", -10 * stride, -4 * stride).arm("right", 13 * stride, 26 * stride)
        people.append(f)
    return "Three people walking together towards the right of the frame.", THREE, people


PRESETS = {
    "standing": p_standing,
    "standing-arms-crossed": p_standing_arms_crossed,
    "standing-hands-on-hips": p_standing_hands_on_hips,
    "walking": p_walking,
    "running": p_running,
    "sitting": p_sitting,
    "sitting-side": p_sitting_side,
    "waving": p_waving,
    "pointing": p_pointing,
    "arms-raised": p_arms_raised,
    "jumping": p_jumping,
    "kneeling": p_kneeling,
    "back-view": p_back_view,
    "thinking": p_thinking,
    "two-side-by-side": p_two_side_by_side,
    "two-talking": p_two_talking,
    "two-handshake": p_two_handshake,
    "two-hug": p_two_hug,
    "two-walking-together": p_two_walking_together,
    "two-sitting-facing": p_two_sitting_facing,
    "three-standing-group": p_three_standing_group,
    "three-walking-group": p_three_walking_group,
}


def build(name: str) -> Pose:
    description, (w, h), figures = PRESETS[name]()
    pose = Pose(name, tuple(f.person(w, h) for f in figures), w, h, description, "preset")
    return validate_pose(pose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    parser.add_argument("--no-previews", action="store_true", help="write JSON only")
    parser.add_argument("names", nargs="*", help="presets to write (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list(PRESETS)
    stale = []
    for name in names:
        pose = build(name)
        text = dumps_pose(pose)
        path = HERE / f"{name}.json"
        if args.check:
            if not path.is_file() or json.loads(path.read_text()) != json.loads(text):
                stale.append(name)
            continue
        path.write_text(text, encoding="utf-8")
        if not args.no_previews:
            from storymaker.perception.pose import render_pose

            render_pose(pose, pose.width, pose.height).save(HERE / f"{name}.png", optimize=True)
        print(f"wrote {name} ({pose.num_people} people)")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
