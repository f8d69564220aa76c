"""Taking an installation off its host for good: its previews stopped (``purged``), then
everything of its own left on the host's engine removed: containers, dependency-cache and
step images, the store of downloaded packages. The records stay in the database (compose's
``down -v`` removes the database with its volume). Refused while a build is in progress."""

from __future__ import annotations

from sqlmodel import col, select

from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.exceptions import Conflict
from orchestrator.core.expiry import StopReason
from orchestrator.core.status import PREVIEW, Status
from orchestrator.pipeline.fill import store_name
from orchestrator.service.gc_report import Action
from orchestrator.state.models import BuildJob
from orchestrator.state.previews import stop_preview


def purge(ctx: Context) -> list[Action]:
    """What was removed from this host, in order."""
    host, instance = ctx.host_id, ctx.settings.instance_id
    with ctx.session() as session:
        building = session.exec(
            select(BuildJob.id).where(BuildJob.host_id == host, BuildJob.status == Status.BUILDING)
        ).all()
        previews = session.exec(
            select(BuildJob.id).where(BuildJob.host_id == host, col(BuildJob.status).in_(PREVIEW))
        ).all()
    if building:
        raise Conflict(
            f"{len(building)} builds are in progress on host {host} ({', '.join(building[:3])}): "
            "cancel them or wait for them to end, then purge again"
        )
    done: list[Action] = []
    detail = f"the installation {instance!r} was taken off host {host}"
    for build_id in previews:
        stopped = stop_preview(ctx, build_id, StopReason.PURGED, detail)
        if stopped is not None:
            done.append(
                Action(
                    "stop preview", build_id, detail, stopped.memory_bytes, stopped.disk_bytes, stopped.port
                )
            )
    runtime = ctx.runtime
    for container in runtime.list_ours():
        runtime.remove(container["Id"])
        done.append(Action("remove container", container["Id"][:12], f"left by installation {instance!r}"))
    images = runtime.images(f"{defaults.LABEL_NAMESPACE}.instance={instance}")
    for _ in range(3):  # a step image goes before the cache image it was made from
        kept = [image for image in images if not runtime.remove_image(image["Id"])]
        for image in (image for image in images if image not in kept):
            target = image["Id"].removeprefix("sha256:")[:12]
            done.append(
                Action(
                    "remove image", target, "a dependency-cache or step image", disk_bytes=image.get("Size")
                )
            )
        images = kept
    store = store_name(instance)
    if runtime.remove_volume(store):
        done.append(Action("remove volume", store, "the store of downloaded packages"))
    return done
