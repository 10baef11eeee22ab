"""The local data lake's latency-hiding layer, started in order and stopped in reverse: the sample CRIC (written from
Rucio's RSEs), a first allow-list from it, the XRootD origin and XCache (devstack.xrootd), and the periodic origin
sync (devstack.origin_sync). Needs the seeded Rucio server (EULAKE-1's root door)."""

from __future__ import annotations

from devstack.origin_sync import OriginSyncService, origins_file, sync_origins
from devstack.service import Service
from devstack.settings import Settings
from devstack.xrootd import XRootDService


class CacheLayer(Service):
    """The whole latency-hiding layer of the local data lake, started in order and stopped in reverse.

    The sample CRIC (written from Rucio's RSEs), a first allow-list from it, the XRootD origin and XCache, and
    (with `sync_every`) the periodic origin sync. Needs the seeded Rucio server (EULAKE-1's root door).
    """

    def __init__(
        self,
        settings: Settings,
        rucio,
        *,
        sync_every: float | None = 60.0,
        cric_port: int | None = None,
        delay_ms: float | None = None,
    ):
        from devstack.cric import CatalogueService

        self.settings, self.rucio, self.sync_every = settings, rucio, sync_every
        self.cric = CatalogueService(settings, port=cric_port)
        self.origins_file = origins_file(settings)
        self.xrootd: XRootDService | None = None
        self.sync: OriginSyncService | None = None
        self.delay_ms = delay_ms
        self._started: list[Service] = []

    def start(self) -> CacheLayer:
        from devstack.cric import catalogue_from_rucio, write_catalogue
        from devstack.rucio_seed import REPLICA_RSE, rses_root

        try:
            write_catalogue(self.cric.file, catalogue_from_rucio(self.rucio.root_client()))
            self._started.append(self.cric.start())
            sync_origins(self.cric.url, self.origins_file)
            self.xrootd = XRootDService(
                self.settings,
                export_root=rses_root(self.settings),
                exports=[f"/{REPLICA_RSE}"],
                origins_file=self.origins_file,
                delay_ms=self.delay_ms,
                metrics_port=self.settings.xcache_metrics_port,
            )
            self._started.append(self.xrootd.start())
            if self.sync_every:
                self.sync = OriginSyncService(self.settings, self.cric.url, self.origins_file, self.sync_every)
                self._started.append(self.sync.start())
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return all(service.alive() for service in self._started)

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()
