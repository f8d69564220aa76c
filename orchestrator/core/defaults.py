"""Every name, label and default limit the orchestrator uses, in one place (Redis keys:
orchestrator.coordination.keys).

Settings that an operator may change live in :mod:`orchestrator.config` and take
their defaults from here.
"""

NODE_IMAGE = "website-orchestrator/node:1"
"""Tag of the image every build container runs (built by images/build.sh)."""

IMAGE_CONTEXT_LABEL = "org.website-orchestrator.context-hash"
"""Image label holding a hash of images/node/: a changed build context means a rebuild."""

LABEL_NAMESPACE = "org.website-orchestrator"
"""Prefix of every label put on our containers; `gc` finds ours with it."""

BUILD_NETWORK = "website-orchestrator-builds"
"""Docker network of build containers: no traffic between containers (icc off)."""

BUILD_BRIDGE = "wob0"
"""Host interface of BUILD_NETWORK; the firewall refuses new connections from it to the host."""

REDIS_SOCKET = "/run/website-orchestrator/redis.sock"
"""Where scripts/dev's Redis listens: a unix socket only root (the service) may open, and no
TCP port, so neither a build container nor another user of this host reaches it."""

REDIS_URL = f"unix://{REDIS_SOCKET}?db=0"
"""The default REDIS_URL: database 0 of that Redis."""

QUEUE_NAME = "builds"
"""RQ queue that carries build jobs: ``builds@<host id>`` is one host's (core.hosts.queue_name)."""


IDLE_TTL = 30 * 60
"""Seconds without traffic after which a preview is stopped."""

MAX_AGE = 24 * 3600
"""Seconds a preview may stay awake at most (counted from its last start or wake)."""

SLEEP_AFTER = 600
"""Seconds without a request after which a preview goes to sleep (its container stopped)."""

SLEEP_LIFETIME = 7 * 24 * 3600
"""Seconds a preview may sleep before it is removed (its container, port and URLs freed)."""

GATEWAY_PORT = 8800
"""Port of the preview gateway (orchestrator.gateway): every preview by its website's or its
build's host name."""

PREVIEW_DOMAIN = "preview.localhost"
"""Domain of the gateway's host names: ``<website>.<domain>``, ``<build>.b.<domain>``. Browsers
resolve every ``*.localhost`` name to loopback; a real host sets a wildcard DNS name."""

REPLACE_DRAIN_SECONDS = 1.0
"""Seconds a replaced preview keeps answering after its successor went live, for requests sent
to its address just before the switch."""

DEPS_REPOSITORY = "website-orchestrator/deps"
"""Repository of dependency-cache images; the tag is ``<instance>-<cache key>``."""


DEPS_CACHE_MB = 10 * 1024
"""Disk the dependency cache may use before gc evicts the least recently used entries."""

REUSE_SECONDS = 24 * 3600
"""An upload with the same files as a build this recent reuses its outcome."""

GC_INTERVAL = 60
"""Seconds between two scheduled gc runs inside the service (0: never)."""


DISPATCH_INTERVAL = 2.0
"""Seconds an idle worker waits for a wake-up before it looks at the queue again."""

AGING_SECONDS = 30.0
"""Seconds of waiting worth one priority level."""

PRIORITY_RANGES = {"user": (0, 4, 2), "admin": (0, 10, 6)}
"""Per role: the lowest and highest priority it may ask for, and its default."""

DISK_QUOTA_MB = 2048
"""What one container of a build may write on top of its image."""

MIN_FREE_DISK_MB = 2048
"""Builds wait while less than this is free on the disks they write to (a cold install of a
React project writes a few hundred MB; a cache entry as much again)."""

MAX_ATTEMPTS = 3
"""Attempts of a build whose failures are the infrastructure's (lost worker, engine down)."""


PREVIEW_PORT_RANGE = (41000, 41999)
"""Host ports handed to previews, both ends included."""

MEMORY_LIMIT = "512m"
"""Memory limit of one build container."""

NANO_CPUS = 250_000_000
"""CPU limit of one build container: 25% of one CPU."""

PIDS_LIMIT = 512
"""Process limit of one build container (npm starts many, a fork bomb starts more)."""

CONTAINER_USER = "1000:1000"
"""The image's unprivileged user: what the dependency fetcher runs as (it runs no project's
code and owns the package store). Builds run as a user of their own (build_user)."""

BUILD_GID = 1000
"""The group every build's user is in: the dependency cache's files are group-writable."""

BUILD_UID_BASE = 200_000
"""A build's own UID is this plus its preview port (unique on a host while the build lives),
so per-UID kernel limits (inotify instances, processes) are its own."""


def build_user(port: int) -> str:
    """The user:group a build's containers run as (each build its own UID)."""
    return f"{BUILD_UID_BASE + port}:{BUILD_GID}"


CONTAINER_WORKDIR = "/app"
"""Where the uploaded files are copied inside the container."""

CONTAINER_CA_PATH = "/home/builder/.orchestrator-ca.pem"
"""Where the host's CA bundle is copied in the container (NODE_EXTRA_CA_CERTS)."""

INSTALL_TIMEOUT = 600
"""Seconds allowed for installing dependencies."""

TYPECHECK_TIMEOUT = 300
"""Seconds allowed for the type check."""

SERVE_TIMEOUT = 120
"""Seconds allowed for the development server to answer after it starts."""

LOG_LINES_KEPT = 1000
"""Log lines of one build kept in the database (the newest)."""

LOG_LINE_MAX_CHARS = 2000
"""A longer log line is cut to this length."""

STATUS_LOG_LINES = 50
"""Log lines returned by the build-status endpoint."""

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""Largest upload accepted (the zip, or all the files together)."""

MAX_UNPACKED_BYTES = 500 * 1024 * 1024
"""Largest total size of the files in an upload once unpacked."""

MAX_FILES = 20_000
"""Most files in one upload."""

IGNORED_DIRS = frozenset({"node_modules", ".git"})
"""Folders dropped from uploads: dependencies are installed by the build, history is not needed."""

NPM_STORE_VOLUME = "website-orchestrator-npm-store"
"""Docker volume (per engine, ``-<instance>`` appended) holding npm's content-addressed cache of
downloaded packages. Only the dependency fetcher, which runs no code of a project's, mounts it."""

NPM_STORE_MB = 5 * 1024
"""Disk the package store may use before gc empties it (it refills from the registry)."""

NEAR_MISS_MAX_LAYERS = 40
"""A near miss starts from a cached node_modules only while that image has fewer layers than
this (each near miss adds one; overlayfs allows 128)."""

STEP_IMAGE_REPOSITORY = "website-orchestrator/step"
"""Short-lived images a build's type-check container starts from (the build's files after its
install scripts); removed with the check."""

EVENTS_HELD = 2000
"""Events a build holds for its live watchers while Redis is away (the oldest are dropped: the
database keeps every line)."""

SQLITE_BUSY_SECONDS = 10
"""How long one SQLite statement waits for another process's write lock (its busy timeout);
``Database.patiently`` retries past it."""

DATABASE_PATIENCE_SECONDS = 45.0
"""How long a build's write waits for a database that is locked or unreachable (a restart, a
long transaction elsewhere) before the fault is the build's."""
