"""A stick figure placed from joint angles (both sides alike), for tests of angles, exercises and the pipeline."""

from __future__ import annotations

import math

import numpy as np

from rehab.core.skeleton import LSP14

UP = np.array([0.0, -1.0])  # image y points down


def _dir(deg_from_down: float, side: int) -> np.ndarray:
    """Unit vector at ``deg_from_down`` from straight down, turned outward on the person's ``side`` (+1 = image
    right, which is the person's left when they face the camera)."""
    r = math.radians(deg_from_down)
    return np.array([side * math.sin(r), math.cos(r)])


def pose(knee_flexion: float = 0.0, hip_flexion: float = 0.0, shoulder_abduction: float = 0.0,
         elbow_flexion: float = 0.0, trunk_lean: float = 0.0, joints=LSP14) -> np.ndarray:
    """A stick figure whose joints are placed from the given angles (both sides alike), in image pixels."""
    kp = {}
    for name, side in (("left", 1), ("right", -1)):
        hip = np.array([200.0 + side * 20, 300.0])
        trunk_up = np.array([math.sin(math.radians(trunk_lean)), -math.cos(math.radians(trunk_lean))])
        shoulder = hip + 120 * trunk_up
        # All angles are drawn in the image plane: the thigh turns by hip_flexion away from the trunk line.
        thigh = -trunk_up
        thigh = np.array([thigh[0] * math.cos(math.radians(hip_flexion)) - thigh[1] * math.sin(math.radians(hip_flexion)),
                          thigh[0] * math.sin(math.radians(hip_flexion)) + thigh[1] * math.cos(math.radians(hip_flexion))])
        knee = hip + 100 * thigh
        a = math.radians(-knee_flexion)
        shank = np.array([thigh[0] * math.cos(a) - thigh[1] * math.sin(a), thigh[0] * math.sin(a) + thigh[1] * math.cos(a)])
        ankle = knee + 100 * shank
        arm = _dir(shoulder_abduction, side)
        elbow = shoulder + 80 * arm
        b = math.radians(side * elbow_flexion)
        forearm = np.array([arm[0] * math.cos(b) - arm[1] * math.sin(b), arm[0] * math.sin(b) + arm[1] * math.cos(b)])
        wrist = elbow + 70 * forearm
        kp.update({f"{name}_hip": hip, f"{name}_shoulder": shoulder, f"{name}_knee": knee, f"{name}_ankle": ankle,
                   f"{name}_elbow": elbow, f"{name}_wrist": wrist})
    mid_shoulder = (kp["left_shoulder"] + kp["right_shoulder"]) / 2
    kp["neck"] = mid_shoulder + 15 * UP
    kp["head_top"] = mid_shoulder + 70 * UP
    kp["thorax"] = mid_shoulder
    kp["pelvis"] = (kp["left_hip"] + kp["right_hip"]) / 2
    return np.array([kp[j] for j in joints.joints])
