"""dp_common.rotations: the 6D rotation representation, quaternions and pose vectors (property
tests), and rotation_log near 0 and pi."""
import numpy as np
import transforms3d
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_common.rotations import (matrix_to_quat, matrix_to_rot6d, pose_to_vector, quat_to_matrix,
                                 rot6d_to_matrix, rotation_log, vector_to_pose)

finite = st.floats(-10.0, 10.0, allow_nan=False)
quats = st.tuples(finite, finite, finite, finite).filter(lambda q: np.linalg.norm(q) > 1e-3)


def _is_rotation(R):
    np.testing.assert_allclose(R @ R.swapaxes(-1, -2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(q=quats)
def test_rot6d_round_trips_a_rotation(q):
    R = quat_to_matrix(q)
    _is_rotation(R)
    d6 = matrix_to_rot6d(R)
    assert d6.shape == (6,)
    np.testing.assert_allclose(d6, R[:2, :].ravel())                  # pytorch3d's rows
    np.testing.assert_allclose(rot6d_to_matrix(d6), R, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(v=st.tuples(*(finite for _ in range(6))).filter(
    lambda v: np.linalg.norm(np.cross(v[:3], v[3:])) > 1e-2 and np.linalg.norm(v[:3]) > 1e-2))
def test_any_6_numbers_give_a_rotation_and_its_rot6d_is_a_fixed_point(v):
    R = rot6d_to_matrix(np.array(v))
    _is_rotation(R)
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(q=quats)
def test_quaternions_round_trip_with_w_nonnegative(q):
    q = np.array(q) / np.linalg.norm(q)
    back = matrix_to_quat(quat_to_matrix(q))
    assert back[0] >= 0
    if abs(q[0]) > 1e-9:
        np.testing.assert_allclose(back, q if q[0] >= 0 else -q, atol=1e-9)
    else:                                    # w = 0: q and -q are both the answer
        assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-9
    np.testing.assert_allclose(quat_to_matrix(q), transforms3d.quaternions.quat2mat(q), atol=1e-12)


def test_batched_shapes_and_pose_vectors():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 5, 4))
    R = quat_to_matrix(q)
    assert R.shape == (4, 5, 3, 3) and matrix_to_rot6d(R).shape == (4, 5, 6)
    T = np.zeros((4, 5, 4, 4))
    T[..., :3, :3], T[..., :3, 3], T[..., 3, 3] = R, rng.normal(size=(4, 5, 3)), 1.0
    v = pose_to_vector(T)
    assert v.shape == (4, 5, 9)
    np.testing.assert_allclose(vector_to_pose(v), T, atol=1e-12)
    np.testing.assert_allclose(matrix_to_quat(R)[2, 3], matrix_to_quat(R[2, 3]), atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(axis=st.tuples(finite, finite, finite).filter(lambda a: np.linalg.norm(a) > 1e-3),
       angle=st.one_of(st.floats(0.0, np.pi), st.sampled_from([0.0, 1e-9, 1e-7, np.pi - 1e-9,
                                                               np.pi - 1e-7, np.pi])))
def test_rotation_log_inverts_the_exponential(axis, angle):
    axis = np.array(axis) / np.linalg.norm(axis)
    R = transforms3d.axangles.axangle2mat(axis, angle)
    w = rotation_log(R)
    assert np.linalg.norm(w) <= np.pi + 1e-12
    np.testing.assert_allclose(transforms3d.axangles.axangle2mat(w, np.linalg.norm(w))
                               if np.linalg.norm(w) > 0 else np.eye(3), R, atol=1e-7)
