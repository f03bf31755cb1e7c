"""Joint sets (MPII-16, LSP-14): names, flip pairs, limbs and mapping between sets.

Left and right are person-centric, as in both datasets. MPII's "upper neck" and LSP's "neck" mark the
same anatomical point and share the name ``neck`` so that the sets map onto each other by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class JointSet:
    name: str
    joints: tuple[str, ...]
    limbs: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"joint set {self.name!r} has duplicate joint names")
        for a, b in self.limbs:
            self.index(a)
            self.index(b)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"joint {joint!r} is not in joint set {self.name!r}: {', '.join(self.joints)}") from None

    def has(self, joint: str) -> bool:
        return joint in self.joints

    @cached_property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Index pairs (left, right) that swap under a horizontal flip."""
        pairs = []
        for i, joint in enumerate(self.joints):
            if joint.startswith("left_"):
                mirror = "right_" + joint[len("left_"):]
                if mirror in self.joints:
                    pairs.append((i, self.joints.index(mirror)))
        return tuple(pairs)

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """perm[i] = index of the joint that joint i becomes after a horizontal flip."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        perm.setflags(write=False)
        return perm

    @cached_property
    def limb_indices(self) -> tuple[tuple[int, int], ...]:
        return tuple((self.index(a), self.index(b)) for a, b in self.limbs)


_LIMBS_COMMON = (
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_wrist", "right_elbow"),
    ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"),
    ("left_elbow", "left_shoulder"),
    ("neck", "head_top"),
)

MPII16 = JointSet(
    name="mpii16",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    limbs=_LIMBS_COMMON + (
        ("right_hip", "pelvis"),
        ("left_hip", "pelvis"),
        ("pelvis", "thorax"),
        ("thorax", "neck"),
        ("right_shoulder", "thorax"),
        ("left_shoulder", "thorax"),
    ),
)

LSP14 = JointSet(
    name="lsp14",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
        "neck", "head_top",
    ),
    limbs=_LIMBS_COMMON + (
        ("right_hip", "left_hip"),
        ("right_shoulder", "right_hip"),
        ("left_shoulder", "left_hip"),
        ("right_shoulder", "neck"),
        ("left_shoulder", "neck"),
    ),
)

# COCO person keypoints (the fixtures' COCO json): face points instead of a head top and neck.
COCO17 = JointSet(
    name="coco17",
    joints=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
            "left_knee", "right_knee", "left_ankle", "right_ankle"),
    limbs=(("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
           ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
           ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
           ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist")),
)

JOINT_SETS: dict[str, JointSet] = {s.name: s for s in (MPII16, LSP14, COCO17)}

# The 12 limb joints of the LSP PCK@0.2 protocol (head and neck left out).
LIMB_JOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def get_joint_set(name: str) -> JointSet:
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown joint set {name!r}; known: {', '.join(JOINT_SETS)}") from None


def joint_set_from_names(joints: tuple[str, ...] | list[str], name: str = "custom") -> JointSet:
    """A joint set for a model whose metadata lists its joints; limbs are those of the known sets."""
    joints = tuple(joints)
    for known in JOINT_SETS.values():
        if known.joints == joints:
            return known
    limbs = {limb for s in JOINT_SETS.values() for limb in s.limbs if limb[0] in joints and limb[1] in joints}
    return JointSet(name=name, joints=joints, limbs=tuple(sorted(limbs)))


def mapping(src: JointSet, dst: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (src_idx, dst_idx) of the joints both sets share, matched by name."""
    shared = [j for j in dst.joints if src.has(j)]
    return (np.array([src.index(j) for j in shared], dtype=np.intp),
            np.array([dst.index(j) for j in shared], dtype=np.intp))


def convert(keypoints: np.ndarray, visible: np.ndarray, src: JointSet, dst: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """Re-order (..., K_src, 2) keypoints into ``dst``; joints ``src`` lacks get NaN and visible 0."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = np.asarray(visible)
    if keypoints.shape[-2:] != (src.num_joints, 2):
        raise ValueError(f"keypoints must have shape (..., {src.num_joints}, 2) for {src.name}, got {keypoints.shape}")
    if visible.shape != keypoints.shape[:-1]:
        raise ValueError(f"visible must have shape {keypoints.shape[:-1]}, got {visible.shape}")
    src_idx, dst_idx = mapping(src, dst)
    out_kp = np.full(keypoints.shape[:-2] + (dst.num_joints, 2), np.nan)
    out_vis = np.zeros(visible.shape[:-1] + (dst.num_joints,), dtype=visible.dtype)
    out_kp[..., dst_idx, :] = keypoints[..., src_idx, :]
    out_vis[..., dst_idx] = visible[..., src_idx]
    return out_kp, out_vis
