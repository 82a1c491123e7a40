"""Start the web server and the delivery worker (the Procfile), saying where each one talks to."""

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_BIND = "127.0.0.1:8000"
# gunicorn's port when WEB_BIND names a host only.
DEFAULT_PORT = "8000"
# Exit codes of the process manager when it was asked to stop (SIGINT, SIGTERM).
STOPPED_CODES = {128 + signal.SIGINT, 128 + signal.SIGTERM}
# Settings that a command run from another shell needs too; they belong in the .env file.
SHARED_SETTINGS = ("WEB_BIND", "SITE_URL", "PAGERDUTY_EVENTS_URL")


def host_and_port(bind: str) -> tuple[str, str] | None:
    """The host (IPv6 in brackets, maybe empty) and port of a gunicorn bind; None for a socket
    file or a file descriptor."""
    bind = bind.strip()
    if not bind or bind.startswith(("unix:", "fd://")):
        return None
    if bind.startswith("["):
        host, _, rest = bind.partition("]")
        return host + "]", rest.removeprefix(":") or DEFAULT_PORT
    host, sep, port = bind.rpartition(":")
    return (host, port) if sep else (port, DEFAULT_PORT)


def admin_url(bind: str) -> str | None:
    """The admin's address for a gunicorn bind (HOST[:PORT]); None for a socket file."""
    parsed = host_and_port(bind)
    if parsed is None:
        return None
    host, port = parsed
    # A wildcard address is not one a browser can open; this machine's loopback reaches it.
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    return f"http://{host}:{port}/admin/"


def in_use(bind: str) -> bool:
    """Whether something already listens where a gunicorn bind asks to serve.

    gunicorn would try five times, a second apart, and stop with "Can't connect"; this says it
    before anything starts. Bound as gunicorn binds (SO_REUSEADDR), so a port that only has
    connections closing on it is not reported.
    """
    parsed = host_and_port(bind)
    if parsed is None or not parsed[1].isdigit():
        return False  # a socket file, or a port gunicorn itself will refuse with its reason
    host, port = parsed[0].strip("[]") or "0.0.0.0", int(parsed[1])  # noqa: S104
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def banner(shell_names: set[str] | None = None) -> list[str]:
    """Where the admin is served, where events go and what they link back to."""
    from django.conf import settings

    from destinations.pagerduty.client import EU_EVENTS_URL, US_EVENTS_URL

    bind = os.environ.get("WEB_BIND") or DEFAULT_BIND
    url = admin_url(bind)
    lines = [f"Serving {url or bind} (Ctrl-C stops everything)"]
    if settings.PAGERDUTY_EVENTS_URL:
        override = settings.PAGERDUTY_EVENTS_URL
        lines.append(f"PagerDuty events go to {override} (PAGERDUTY_EVENTS_URL)")
    else:
        lines.append(
            f"PagerDuty events go to each destination's region: {US_EVENTS_URL} (US) or "
            f"{EU_EVENTS_URL} (EU)"
        )
    lines.append(f"Events link back to {settings.SITE_URL} (SITE_URL)")
    only_here = _set_in_shell_only(shell_names or set(), settings.ENV_FILE)
    if only_here:
        lines.append(
            f"Note: {', '.join(only_here)} {'is' if len(only_here) == 1 else 'are'} set in this "
            f"shell only; put {'it' if len(only_here) == 1 else 'them'} in {settings.ENV_FILE} "
            "so manage.py commands run from another shell use the same."
        )
    return lines


def _set_in_shell_only(shell_names: set[str], env_file: str) -> list[str]:
    from project.envfile import existing_names

    if not env_file:
        return []
    path = Path(env_file)
    in_file = existing_names(path.read_text()) if path.is_file() else set()
    return [name for name in SHARED_SETTINGS if name in shell_names and name not in in_file]


def main() -> int:
    shell_names = set(os.environ)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    # Loading the settings adds the .env file's names to os.environ (a real variable wins),
    # so the processes started below see exactly what the settings saw.
    django.setup()
    os.environ.setdefault("WEB_BIND", DEFAULT_BIND)
    if in_use(os.environ["WEB_BIND"]):
        from django.conf import settings

        where = settings.ENV_FILE or "the environment"
        print(
            f"Cannot serve on {os.environ['WEB_BIND']}: something else listens there. Stop it, "
            f"or serve elsewhere with WEB_BIND (for example WEB_BIND=127.0.0.1:8001) in {where}.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    for line in banner(shell_names):
        print(line, flush=True)

    environment = {
        **os.environ,
        # The Procfile's gunicorn and python are this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    stop_requested: list[int] = []
    manager: subprocess.Popen | None = None

    def stop(signum, frame):
        stop_requested.append(signum)
        if manager is not None and manager.poll() is None:
            manager.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    # The manager reads no env file of its own: it would let .env override a real variable.
    # Its own process group: a Ctrl-C reaches it once, forwarded from here.
    manager = subprocess.Popen(  # noqa: S603 (a fixed command line, nothing from input)
        [sys.executable, "-m", "honcho", "start", "--env", os.devnull],
        cwd=BASE_DIR,
        env=environment,
        process_group=0,
    )
    if stop_requested:
        manager.send_signal(signal.SIGTERM)
    code = manager.wait()
    if stop_requested or code in STOPPED_CODES:
        print("Stopped: the web server and the delivery worker have exited.", flush=True)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
