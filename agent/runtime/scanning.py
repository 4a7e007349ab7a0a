"""Coupon scanning in the running agent: its own camera and thread, beside counting."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import AgentConfig
from agent.coupons.desk import CouponDesk
from agent.coupons.ledger import DEFAULT_ACTORS, Redemption
from agent.coupons.live import LiveScanner
from agent.coupons.scanner import LiveReader, QrScanner
from agent.runtime.counting import CaptureFailed
from agent.vision.capture import FrameSource
from agent.vision.source import SourceSpec

logger = logging.getLogger(__name__)


@dataclass
class ScanStats:
    frames: int = 0
    codes_seen: int = 0
    redeemed: int = 0
    refused: int = 0


class ScanService:
    """The scanning component: reads the scan camera at a modest rate, confirms codes over frames and
    redeems them once. The ledger's connection is opened in the component's own thread."""

    name = "scanning"
    required = False

    def __init__(
        self,
        config: AgentConfig,
        source: SourceSpec,
        on_redemption: Callable[[Redemption], None] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.on_redemption = on_redemption
        self.stats = ScanStats()

    @property
    def may_finish(self) -> bool:
        """A file ends; a camera that stops delivering is a failure."""
        return self.source.kind == "file"

    def run(self, stop: threading.Event, running: Callable[[], None]) -> None:
        with CouponDesk.from_config(self.config) as desk:  # its connection belongs to this thread
            self._scan(desk, stop, running)

    def _scan(self, desk: CouponDesk, stop: threading.Event, running: Callable[[], None]) -> None:
        coupons = self.config.coupons
        live = LiveScanner(
            confirm_frames=coupons.confirm_frames,
            signed=desk.signature_holds if coupons.accept_signed_at_once else None,
        )
        reader = LiveReader(
            QrScanner(deblur_budget_ms=coupons.deblur_budget_ms), coupons.deblur_every, coupons.fuse_frames
        )
        frames = FrameSource(
            self.source,
            queue_size=1,
            target_fps=coupons.scan_fps,
            realtime=True,
            reconnect_max_s=self.config.camera.reconnect_max_s,
            stop=stop,
            file_start_t=time.time(),
        )
        frames.start()
        logger.info("scanning coupons on %s at up to %.1f fps", self.source.label, coupons.scan_fps)
        running()
        try:
            while not stop.is_set():
                frame = frames.get(timeout=0.5)
                if frame is None:
                    if frames.finished:
                        break
                    continue
                self.stats.frames += 1
                codes = reader.read(frame.image)
                self.stats.codes_seen += len(codes)
                for text in live.observe(codes, frame.mono):  # confirmation windows are durations
                    self.handle(desk, text)
        finally:
            frames.stop()
        if not stop.is_set() and frames.error is not None:
            raise CaptureFailed(f"{self.source.label}: capture stopped: {frames.error}") from frames.error

    def handle(self, desk: CouponDesk, text: str) -> Redemption:
        """Verify one confirmed code and redeem it; the outcome is logged in words for staff."""
        outcome = desk.redeem(text, DEFAULT_ACTORS["scanner"], "scanner")
        if outcome.redeemed:
            self.stats.redeemed += 1
        else:
            self.stats.refused += 1
        serial = outcome.coupon.serial_hex if outcome.coupon is not None else "-"
        logger.info("coupon %s: %s %s", serial, outcome.result.value, outcome.result.message)
        if self.on_redemption is not None:
            self.on_redemption(outcome)
        return outcome
