"""`cloudstrype serve`: the whole stack in one process, no AWS account needed."""
from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from cloudstrype import limits
from cloudstrype.metadata.engine import MetadataError
from cloudstrype.settings import Settings

from infra.local.services import LOCK_FILE, RESOURCES_FILE, foreign_folder

REGION = "us-east-1"
# The setting of the public address, as the functions read it.
PUBLIC_URL_ENV = Settings.env_names()["public_url"]

log = logging.getLogger("cloudstrype.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"
STACK_FILE = "stack.json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class StartupError(Exception):
    """A problem the person starting the stack can fix; printed without a traceback."""


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OverflowError:
            raise StartupError(f"Port {port} is not a port; use 1-65535.") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"Port {port} on {host} is already in use. Stop the program "
                                   f"using it, or start with --port <another port>.") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(f"{host} is not an address of this machine; use --host "
                                   f"127.0.0.1 or 0.0.0.0.") from None
            raise StartupError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None




def _make_data_dir(data_dir: Path) -> None:
    """The data directory, made (or checked) and closed to everyone but its owner: it holds
    password hashes, e-mails, the file tree and (locally) the master key; PostgreSQL and restic
    keep theirs 0700 too. A folder of other files is not taken over (nor its mode changed):
    `--data-dir ~` or `/tmp` by mistake would otherwise be closed to everyone else and filled."""
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise StartupError(f"{data_dir} is a file, not a folder; name a folder (new or "
                               f"Cloudstrype's) with --data-dir.")
        if foreign_folder(data_dir):
            raise StartupError(f"{data_dir} holds other files and no Cloudstrype data; name a "
                               f"new or empty folder with --data-dir (or the one Cloudstrype "
                               f"used before).")
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
    except OSError as exc:
        raise StartupError(f"Cannot use {data_dir} as the data directory: "
                           f"{exc.strerror or exc}.") from None


def _lock_data_dir(data_dir: Path):
    lock_file = (data_dir / LOCK_FILE).open("w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StartupError(f"Another Cloudstrype server is using {data_dir}; stop it first or "
                           f"pass a different --data-dir.") from None
    return lock_file


class LocalStack:
    """Everything `serve` runs, startable from tests too.

    Mode `local` (the default) runs the embedded services; `aws-emulated` (a test tool, set
    CLOUDSTRYPE_SERVE_MODE) runs the same handlers against moto's AWS.
    """

    def __init__(self, host: str, port: int, data_dir: Path, mode: str | None = None):
        self.host, self.port = host, port
        self.data_dir = data_dir.resolve()
        self.mode = mode or os.environ.get("CLOUDSTRYPE_SERVE_MODE", "local")
        if self.mode not in ("local", "aws-emulated"):
            raise StartupError(f"CLOUDSTRYPE_SERVE_MODE must be 'local' or 'aws-emulated', not "
                               f"{self.mode!r}.")
        self.services = None
        self.moto = None
        self.management_port = 0
        self.scheduled: dict = {}
        self._lock_file = None
        # As the operator set it: the settings exported for the functions overwrite it.
        self._public_url_given = os.environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/")

    @property
    def url(self) -> str:
        """Where this machine reaches the server (the admin commands and the tests use it)."""
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in shown:
            shown = f"[{shown.strip('[]')}]"      # an IPv6 address, as a URL writes it
        return f"http://{shown}:{self.port}"

    def _given_public_url(self) -> str | None:
        """CLOUDSTRYPE_PUBLIC_URL as the operator set it (a TLS proxy in front: OAuth's
        redirects, links' addresses and the web UI's WebSocket name it); None if not set."""
        given = self._public_url_given
        return self._checked_public_url(given) if given else None

    @property
    def public_url(self) -> str:
        """Where users reach it: CLOUDSTRYPE_PUBLIC_URL, else `url`."""
        return self._given_public_url() or self.url

    @staticmethod
    def _checked_public_url(given: str) -> str:
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
                parts.fragment or parts.username or parts.password or parts.path:
            raise StartupError(f"{PUBLIC_URL_ENV} must be an address such as "
                               f"https://files.example.org (a scheme, a host, an optional port, "
                               f"nothing after it), not {given!r}.")
        return given

    def prepare(self):
        """Start the services behind the handlers and export their settings; returns the
        gateway."""
        from infra.local.services import LocalServices, SecretsMissing, export_settings

        _make_data_dir(self.data_dir)
        self._lock_file = _lock_data_dir(self.data_dir)
        _check_port(self.host, self.port)
        self.management_port = free_port("127.0.0.1")
        # The management API's path starts with a secret of this run, known to the handlers
        # through their settings alone (in AWS the caller's IAM signature is what is checked).
        management_secret = secrets.token_urlsafe(24)
        management_url = f"http://127.0.0.1:{self.management_port}/{management_secret}"
        public_url = self.public_url
        stack_info = {"url": self.url, "public_url": public_url, "pid": os.getpid(),
                      "mode": self.mode}
        if self.mode == "local":
            from infra.local import upgrade
            self.services = LocalServices(self.data_dir, public_url, management_url,
                                          own_url=self.url)
            export_settings(self.services.settings())
            try:
                self.services.start()
            except (MetadataError, SecretsMissing) as exc:
                raise StartupError(str(exc)) from None
            try:
                upgrade.import_if_needed(self.data_dir)
            except upgrade.UpgradeError as exc:
                raise StartupError(str(exc)) from None
        else:
            from infra.local import aws
            self.moto = aws.MotoServer()
            aws.configure_process_for_local_aws(self.moto.endpoint)
            self.moto.start()
            resources = aws.ensure_resources(self.data_dir / RESOURCES_FILE)
            export_settings(aws.settings(resources, self.moto.endpoint, public_url=public_url,
                                         ws_management_url=management_url,
                                         local_storage_root=str(self.data_dir / "storages")))
            stack_info.update(aws_endpoint=self.moto.endpoint, **resources.to_json())

        from cloudstrype.identity import token_settings
        from cloudstrype.settings import get_settings

        import functions
        from infra.local.gateway import Gateway
        apps = [functions.load_app(name) for name in functions.available_services()]
        gateway = Gateway(apps, functions.websocket_handlers(),
                          WEB_DIR if WEB_DIR.is_dir() else None,
                          web_config={"apiBaseUrl": "",
                                      "userPoolClientId": token_settings(get_settings())[2],
                                      # Behind a TLS proxy the browser must be told wss://
                                      # at the public address (it cannot tell from here).
                                      **({"websocketUrl": get_settings().websocket_endpoint()}
                                         if self._given_public_url() else {})},
                          management_secret=management_secret)
        self.scheduled = functions.scheduled_handlers()
        (self.data_dir / STACK_FILE).write_text(json.dumps(stack_info, indent=2))
        return gateway

    async def run(self, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None):
        from aiohttp import web

        gateway = self.prepare()
        # aiohttp's own limits sit above API Gateway's, so that what API Gateway refuses gets
        # the API's JSON answer from the gateway, not aiohttp's text one.
        parser_limit = 4 * limits.REST_HEADERS_MAX_BYTES
        public = web.AppRunner(gateway.public_app(), access_log=None, handle_signals=False,
                               max_line_size=parser_limit, max_field_size=parser_limit)
        management = web.AppRunner(gateway.management_app(), access_log=None)
        await public.setup()
        await management.setup()
        transfer_socket = None
        try:
            try:
                await web.TCPSite(public, self.host, self.port).start()
            except OSError as exc:
                raise StartupError(f"Cannot listen on {self.host}:{self.port}: {exc.strerror}.") \
                    from None
            await web.TCPSite(management, "127.0.0.1", self.management_port).start()
            transfer_socket = self._open_transfer_socket(gateway)
            print(f"Cloudstrype is running at {self.url}  (data in {self.data_dir}; Ctrl-C stops)",
                  flush=True)
            public_url = self.public_url
            if public_url != self.url:
                print(f"Users reach it at {public_url} ({PUBLIC_URL_ENV}).", flush=True)
            if self.host not in ("127.0.0.1", "::1", "localhost") and \
                    not public_url.startswith("https://"):
                print(f"Warning: listening on {self.host} in plain HTTP: passwords and files "
                      f"cross the network readable. Put a TLS-terminating proxy in front and "
                      f"set {PUBLIC_URL_ENV} to its https:// address (SECURITY.md).", flush=True)
            if ready is not None:
                ready.set()
            jobs = asyncio.create_task(self._run_schedules(gateway))
            stop = stop or asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            print("Stopping Cloudstrype…", flush=True)
            jobs.cancel()
        finally:
            if transfer_socket is not None:
                transfer_socket.close()
            for connection in list(gateway.connections.values()):
                if connection.socket is not None:
                    await connection.socket.close(code=1001, message=b"Server shutting down")
            await public.cleanup()
            await management.cleanup()
            gateway.executor.shutdown(wait=True, cancel_futures=True)
            self.shutdown()

    def _open_transfer_socket(self, gateway):
        """Downloads into the CLI's own file, for a CLI on this machine (infra/local/transfer.py);
        None where it is switched off or the platform cannot pass files over a socket."""
        from infra.local import transfer
        if not transfer.enabled() or not hasattr(socket, "recv_fds") or \
                not hasattr(socket, "SO_PEERCRED"):
            return None
        try:
            opened = transfer.TransferSocket(gateway, asyncio.get_running_loop(),
                                            self.url.split("://", 1)[1],
                                            transfer.socket_path(self.data_dir))
        except OSError as exc:
            log.warning("no local transfer socket (downloads go over HTTP only): %s", exc)
            return None
        gateway.transfer_socket = str(opened.path)
        return opened

    async def _run_schedules(self, gateway) -> None:
        """What EventBridge does in AWS: call each scheduled job's handler now and then."""
        interval = float(os.environ.get("CLOUDSTRYPE_SCHEDULE_INTERVAL", "600"))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            for name, handler in self.scheduled.items():
                event = {"version": "0", "id": str(uuid.uuid4()),
                         "detail-type": "Scheduled Event", "source": "aws.events",
                         "account": "000000000000", "region": REGION,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "resources": [f"arn:aws:events:{REGION}:000000000000:rule/{name}"],
                         "detail": {}}
                try:
                    result = await loop.run_in_executor(gateway.executor, handler, event, None)
                    log.info("scheduled job %s: %s", name, result)
                except MetadataError as exc:
                    # The metadata store's own words (its disk full, busy): said in a line, as
                    # requests meeting it are; the job runs again at the next interval.
                    log.warning("scheduled job %s stopped, to run again in %.0f s: %s", name,
                                interval, exc)
                except Exception:
                    log.exception("scheduled job %s failed", name)

    def shutdown(self) -> None:
        """Stop what this instance started; a server refused at start-up owns nothing here."""
        if self.services is not None:
            self.services.stop()
            self.services = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self._lock_file is not None:
            (self.data_dir / STACK_FILE).unlink(missing_ok=True)
            self._lock_file.close()
            self._lock_file = None


# Libraries whose debug lines carry secrets: botocore logs each request's signed headers,
# urllib3 the URLs (a presigned one is a credential), requests-oauthlib and oauthlib the token
# requests and answers. At most their warnings reach the log, whatever its level.
SECRET_TELLING_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "requests_oauthlib",
                          "oauthlib")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # moto and werkzeug narrate every request; keep the console for what matters.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for name in SECRET_TELLING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(host: str, port: int, data_dir: str) -> int:
    configure_logging(os.environ.get("CLOUDSTRYPE_LOG_LEVEL", "WARNING"))
    stack = LocalStack(host, port, Path(data_dir))
    try:
        asyncio.run(stack.run())
    except StartupError as exc:
        print(f"cloudstrype serve: {exc}", file=sys.stderr)
        stack.shutdown()
        return 2
    except KeyboardInterrupt:
        stack.shutdown()
    print("Stopped.", flush=True)
    # The library's work threads may still wait on a storage (a paced write, a read a request
    # gave up on): what was answered is durable and every connection is closed, so the process
    # ends now, not when they return (Python joins executor threads at exit).
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)
