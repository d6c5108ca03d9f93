"""Built-in physiological generator: a synthetic patient that needs no recorded data.

Each vital drifts slowly as an Ornstein-Uhlenbeck process around the middle of its profile band
(mean reversion with time constant ``tau_s``; exact discretisation at 1 s). Readings add
measurement noise and two kinds of random artefact that real bedside monitors show:

- *motion* episodes (2 to 6 s): heart-rate and respiration readings jump, SpO2 reads low, and
  the ECG and PPG waveforms get motion noise;
- *SpO2 dropouts* (3 to 10 s): the oximeter gives no reading (NaN, validity flag clear).

Everything is a function of the seed: random numbers are hashed from (seed, stream, second), so
a given second has the same value whichever order seconds are asked in. The drift itself is a
recursion and is computed forward once and cached.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.frames import Sensor, WaveformChannel
from firmware_bridge.sim._noise import hashed_normal, hashed_uniform
from firmware_bridge.sim.profiles import PatientProfile, VitalRange
from firmware_bridge.sim.vitals import N_VITALS, Vital, clamp_vitals, mean_arterial_pressure

__all__ = ["SYNTHETIC_SENSORS", "SyntheticPatient"]

_log = logging.getLogger(__name__)

SYNTHETIC_SENSORS: Final = (
    Sensor.ECG | Sensor.PPG | Sensor.SPO2 | Sensor.RESP | Sensor.ABP | Sensor.TEMP
)

# Drift state columns: HR, SpO2, RR, SBP, diastolic residual, temperature.
_N_STATE: Final = 6
_DBP_RES: Final = 4

# Random number streams (any distinct integers).
_S_INIT: Final = 1
_S_DRIFT: Final = 2
_S_NOISE: Final = 3
_S_MOTION_START: Final = 4
_S_MOTION_LEN: Final = 5
_S_DROP_START: Final = 6
_S_DROP_LEN: Final = 7
_S_MOTION_HIT: Final = 8

_SECONDS_PER_HOUR: Final = 3600.0
_MOTION_MIN_S: Final = 2
_MOTION_MAX_S: Final = 6
_DROPOUT_MIN_S: Final = 3
_DROPOUT_MAX_S: Final = 10

# What a motion artefact does to a reading (one standard deviation, or a mean drop for SpO2).
_MOTION_HR_SD_BPM: Final = 15.0
_MOTION_RR_SD_PER_MIN: Final = 4.0
_MOTION_SPO2_DROP_PCT: Final = 4.0
_MOTION_CACHE_SIZE: Final = 4096
_MOTION_CACHE_MAX_QUERY: Final = 8

# Systolic and diastolic pressure move together: DBP = its mean + rho * (SBP deviation scaled to
# the DBP band) + an independent residual, so each keeps the spread of its own band.
_BP_CORRELATION: Final = 0.8
_DBP_RESIDUAL: Final = math.sqrt(1.0 - _BP_CORRELATION**2)


def _episode_active(
    seed: int,
    seconds: NDArray[np.int64],
    *,
    rate_per_hour: float,
    min_len: int,
    max_len: int,
    streams: tuple[int, int],
) -> NDArray[np.bool_]:
    """Random-access Poisson episodes: is second k inside an episode that started at k - j?

    An episode starts at second s with probability rate/3600 and lasts min_len..max_len seconds;
    both are hashed from s, so the answer never depends on which seconds were asked before.
    """
    if rate_per_hour <= 0:
        return np.zeros(seconds.shape, dtype=np.bool_)
    p_start = rate_per_hour / _SECONDS_PER_HOUR
    back = np.arange(max_len)
    starts = seconds[:, None] - back[None, :]
    started = hashed_uniform(seed, streams[0], starts.ravel()).reshape(starts.shape) < p_start
    length = min_len + np.floor(
        hashed_uniform(seed, streams[1], starts.ravel()).reshape(starts.shape)
        * (max_len - min_len + 1)
    )
    covers = back[None, :] < length
    out: NDArray[np.bool_] = np.any(started & covers & (starts >= 0), axis=1)
    return out


class SyntheticPatient:
    """A simulated patient of a given profile: physiology per second and how it is measured.

    ``physiology(k)`` is the true state at second k (before any injected event);
    ``measure(k, row)`` turns a true row into a monitor reading (noise, artefacts);
    ``motion_level(t)`` tells the waveform synthesiser where motion noise belongs.
    """

    def __init__(
        self, profile: PatientProfile, seed: int = 0, *, history_s: int | None = None
    ) -> None:
        """Start a patient; the drift begins at a random point of its stationary distribution.

        ``history_s``: keep only this many past seconds in memory (a long-running simulator
        asks in order and never looks back far); None keeps everything (offline generation).
        """
        self.profile = profile
        self.seed = seed
        self.name = f"synthetic:{profile.name}"
        self.sensors = SYNTHETIC_SENSORS
        ranges = (
            profile.hr,
            profile.spo2,
            profile.rr,
            profile.sbp,
            # diastolic residual: the part of DBP not explained by SBP (mean 0)
            VitalRange(
                -2.0 * profile.dbp.drift_sd * _DBP_RESIDUAL,
                2.0 * profile.dbp.drift_sd * _DBP_RESIDUAL,
                profile.dbp.tau_s,
                profile.dbp.noise_sd,
            ),
            profile.temp,
        )
        self._mean = np.array([r.mean for r in ranges])
        self._sd = np.array([r.drift_sd for r in ranges])
        self._decay = np.array([math.exp(-1.0 / r.tau_s) for r in ranges])
        self._innov = self._sd * np.sqrt(1.0 - self._decay**2)
        self._noise_sd = np.array([r.noise_sd for r in ranges])
        self._sbp_mean = profile.sbp.mean
        self._dbp_mean = profile.dbp.mean
        self._dbp_per_sbp = _BP_CORRELATION * profile.dbp.drift_sd / profile.sbp.drift_sd
        self._motion_cache: dict[int, bool] = {}
        self.history_s = history_s
        self._k0 = 0  # second of self._rows[0]
        self._state: NDArray[np.float64] | None = None
        self._rows: list[NDArray[np.float64]] = []
        _log.debug("synthetic patient %s, seed %d", profile.name, seed)

    def _draw(self, stream: int, second: int) -> NDArray[np.float64]:
        keys = np.arange(_N_STATE, dtype=np.int64) + np.int64(second) * _N_STATE
        return hashed_normal(self.seed, stream, keys)

    def _extend(self, second: int) -> None:
        while self._k0 + len(self._rows) <= second:
            k = self._k0 + len(self._rows)
            if self._state is None:
                state = self._mean + self._sd * self._draw(_S_INIT, 0)
            else:
                state = self._mean + (self._state - self._mean) * self._decay
                state = state + self._innov * self._draw(_S_DRIFT, k)
            self._state = state
            self._rows.append(self._to_row(state))
        if self.history_s is not None and len(self._rows) > 2 * self.history_s:
            drop = len(self._rows) - self.history_s
            del self._rows[:drop]
            self._k0 += drop

    def _row(self, second: int) -> NDArray[np.float64]:
        if second < 0:
            raise ValueError(f"second={second} must be >= 0")
        self._extend(second)
        if second < self._k0:
            raise IndexError(f"second {second} is older than the {self.history_s} s kept")
        return self._rows[second - self._k0]

    def _to_row(self, state: NDArray[np.float64]) -> NDArray[np.float64]:
        row = np.empty(N_VITALS)
        row[Vital.HR] = state[0]
        row[Vital.SPO2] = state[1]
        row[Vital.RR] = state[2]
        row[Vital.SBP] = state[3]
        row[Vital.DBP] = (
            self._dbp_mean + self._dbp_per_sbp * (state[3] - self._sbp_mean) + state[_DBP_RES]
        )
        row[Vital.MAP] = mean_arterial_pressure(state[3], row[Vital.DBP])
        row[Vital.TEMP] = state[5]
        return clamp_vitals(row)

    def physiology(self, second: int) -> NDArray[np.float64]:
        """True vitals at whole second ``second`` (>= 0), before events. Columns as `Vital`."""
        return self._row(second).copy()

    def physiology_block(self, n_seconds: int) -> NDArray[np.float64]:
        """True vitals for seconds 0..n-1 as an (n, 7) array (for offline data generation)."""
        if n_seconds <= 0:
            return np.empty((0, N_VITALS))
        self._extend(n_seconds - 1)
        if self._k0 > 0:
            raise IndexError(f"seconds before {self._k0} are no longer kept (history_s)")
        return np.vstack(self._rows[:n_seconds])

    def motion(self, seconds: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True at seconds inside a motion artefact episode."""
        seconds = np.asarray(seconds, dtype=np.int64)
        if seconds.size <= _MOTION_CACHE_MAX_QUERY:  # the board asks 1-2 seconds per chunk
            hits = [self._motion_cache.get(int(k)) for k in seconds]
            if all(h is not None for h in hits):
                return np.array(hits, dtype=np.bool_)
        out = _episode_active(
            self.seed,
            np.asarray(seconds, dtype=np.int64),
            rate_per_hour=self.profile.motion_per_hour,
            min_len=_MOTION_MIN_S,
            max_len=_MOTION_MAX_S,
            streams=(_S_MOTION_START, _S_MOTION_LEN),
        )
        if seconds.size <= _MOTION_CACHE_MAX_QUERY:
            if len(self._motion_cache) > _MOTION_CACHE_SIZE:
                self._motion_cache.clear()
            self._motion_cache.update(zip(seconds.tolist(), out.tolist(), strict=True))
        return out

    def spo2_dropout(self, seconds: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True at seconds where the oximeter gives no reading."""
        return _episode_active(
            self.seed,
            np.asarray(seconds, dtype=np.int64),
            rate_per_hour=self.profile.spo2_dropout_per_hour,
            min_len=_DROPOUT_MIN_S,
            max_len=_DROPOUT_MAX_S,
            streams=(_S_DROP_START, _S_DROP_LEN),
        )

    def motion_level(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Waveform motion-noise level (0 or 1) at times ``t_s``."""
        seconds = np.floor(np.asarray(t_s)).astype(np.int64)
        unique, inverse = np.unique(seconds, return_inverse=True)  # a chunk spans 1-2 seconds
        return self.motion(unique).astype(np.float64)[inverse.reshape(seconds.shape)]

    def measure(self, second: int, true_row: NDArray[np.float64]) -> NDArray[np.float64]:
        """The monitor's reading of a true vitals row at ``second``: noise plus artefacts."""
        k = np.array([second], dtype=np.int64)
        z = self._draw(_S_NOISE, second)
        row = np.array(true_row, dtype=np.float64, copy=True)
        row[Vital.HR] += z[0] * self._noise_sd[0]
        row[Vital.SPO2] += z[1] * self._noise_sd[1]
        row[Vital.RR] += z[2] * self._noise_sd[2]
        row[Vital.SBP] += z[3] * self._noise_sd[3]
        row[Vital.DBP] += z[4] * self._noise_sd[4]
        row[Vital.TEMP] += z[5] * self._noise_sd[5]
        row[Vital.MAP] = mean_arterial_pressure(row[Vital.SBP], row[Vital.DBP])
        if self.motion(k)[0]:
            hit = hashed_normal(self.seed, _S_MOTION_HIT, np.arange(3, dtype=np.int64) + 3 * k)
            row[Vital.HR] += hit[0] * _MOTION_HR_SD_BPM
            row[Vital.RR] += hit[1] * _MOTION_RR_SD_PER_MIN
            row[Vital.SPO2] -= abs(hit[2]) * _MOTION_SPO2_DROP_PCT
        if self.spo2_dropout(k)[0]:
            row[Vital.SPO2] = np.nan
        return clamp_vitals(row)

    def readings(self, n_seconds: int) -> NDArray[np.float64]:
        """Measured vitals for seconds 0..n-1 without events, (n, 7); NaN = not measured."""
        block = self.physiology_block(n_seconds)
        return np.vstack([self.measure(k, block[k]) for k in range(n_seconds)])

    # The board asks every source the same questions; a synthetic patient records nothing.
    end_s: float | None = None

    def native_rate(self, channel: WaveformChannel) -> int | None:
        """Synthesised waveforms have no native rate (None): any board rate works."""
        del channel
        return None

    def scale(self, channel: WaveformChannel) -> tuple[float, int] | None:
        """None: the model's fixed gains apply to synthesised waveforms."""
        del channel
        return None

    def recorded(
        self, channel: WaveformChannel, t_s: NDArray[np.float64]
    ) -> NDArray[np.float64] | None:
        """None: every waveform of a synthetic patient is synthesised."""
        del channel, t_s
        return None

    def pace_times(self, t0_s: float, t1_s: float) -> NDArray[np.float64]:
        """Empty: a synthetic patient has no pacemaker (the board sends no PACE frames)."""
        del t0_s, t1_s
        return np.empty(0)
