"""Run the command-line tools as real processes without paying a fresh
interpreter's start-up (~5 s of importing torch, MMEngine and mmfacekd) for
each run.

``python tests/tool_server.py MODULE...`` (a real subprocess, started with
the environment the tool runs would get) imports the given modules once and
then, per request, forks a child that runs ``python SCRIPT ARGS...`` the way
the interpreter would: ``sys.argv``, ``sys.path[0]`` (the script's folder),
the working directory, stdout/stderr to a log file, stdin from /dev/null,
its own session (process group), ``__main__`` semantics through
:func:`runpy.run_path`, an uncaught exception printed by ``sys.excepthook``
with exit status 1, ``SystemExit`` codes, ``atexit`` handlers, and the
entropy-seeded ``random``/``numpy`` global generators of a new interpreter.
The child is an ordinary OS process: it can be SIGKILLed and its exit
status is the one ``subprocess`` would report.

Only imports happen in the server (no registration call, no torch
computation, a single thread); the server checks that the imports left the
``weights_only`` allow-list of ``mmfacekd.utils.register_safe_globals``
unapplied, so a child starts with the same checkpoint-loading policy as a
fresh ``python tools/....py``.

The client (:class:`ToolServer`, :func:`shared_server`) lives in the test
process.
"""
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

#: variables pytest changes from test to test, which nothing reads at
#: import time: a server's children get the caller's values
VOLATILE_ENV = ('PYTEST_CURRENT_TEST', )

#: what the tools import before their ``main()`` runs, and what every
#: MMEngine Runner imports when it is built (``collect_env``: distutils;
#: the Visualizer: matplotlib's Agg canvas)
PRELOAD = (
    'torch', 'numpy', 'mmengine.config', 'mmengine.dataset', 'mmengine.dist',
    'mmengine.runner', 'mmengine.utils', 'mmfacekd.datasets',
    'mmfacekd.engine', 'mmfacekd.evaluation', 'mmfacekd.models',
    'mmfacekd.utils', 'mmfacekd.models.distillers.teacher_cache',
    'mmfacekd.utils.teacher_cache_writer', 'distutils.errors',
    'matplotlib.backends.backend_agg')


# ----------------------------------------------------------------- server
def _exit_status(exc: SystemExit) -> int:
    """The exit status CPython gives an uncaught ``SystemExit``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(req: dict, close_fds: Sequence[int]) -> None:
    """Become ``python SCRIPT ARGS...`` (never returns)."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            os.close(fd)
        os.setsid()  # as subprocess.Popen(start_new_session=True)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        log = os.open(req['log'], os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                      0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(req['cwd'])
        if req.get('env') is not None:
            os.environ.clear()
            os.environ.update(req['env'])
        import random
        random.seed()  # a new interpreter seeds these from the OS
        if 'numpy' in sys.modules:
            sys.modules['numpy'].random.seed()
        import runpy
        script = req['argv'][0]
        sys.argv = list(req['argv'])
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        try:
            runpy.run_path(script, run_name='__main__')
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc)
        except BaseException:
            sys.excepthook(*sys.exc_info())
            status = 1
        # interpreter shutdown: non-daemon threads, atexit, stdio
        import threading
        try:
            threading._shutdown()
        except BaseException:
            pass
        import atexit
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
    finally:
        os._exit(status)


def _serve() -> None:
    import importlib
    for name in sys.argv[1:]:
        importlib.import_module(name)
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    from mmfacekd.utils.checkpoint_safety import (
        _history_buffer_getstate,
        safe_globals,
    )
    allowed = torch.serialization.get_safe_globals()
    assert not any(g in allowed for g in safe_globals()), \
        'preloading registered the mmfacekd weights_only allow-list'
    assert HistoryBuffer.__getstate__ is not _history_buffer_getstate, \
        'preloading patched HistoryBuffer pickling'

    # replies on a private fd; the server's own stdout goes to stderr
    reply = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    reply.write(json.dumps({'ready': os.getpid()}) + '\n')
    buf = b''
    children = set()
    eof = False
    while not eof or children:
        ready, _, _ = select.select([wake_r] + ([] if eof else [0]), [], [],
                                    1.0)
        if 0 in ready:
            chunk = os.read(0, 65536)
            eof = not chunk
            buf += chunk
            while b'\n' in buf:
                line, buf = buf.split(b'\n', 1)
                req = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(req, (reply.fileno(), wake_r, wake_w))
                children.add(pid)
                reply.write(json.dumps({'id': req['id'], 'pid': pid}) + '\n')
        try:
            while os.read(wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            rc = os.waitstatus_to_exitcode(status)
            reply.write(json.dumps({'pid': pid, 'rc': rc}) + '\n')


# ----------------------------------------------------------------- client
class ToolProcess:
    """A forked tool run; ``pid``, ``poll()``, ``wait()`` and
    ``returncode`` as on :class:`subprocess.Popen`."""

    def __init__(self, server: 'ToolServer', pid: int):
        self.server, self.pid = server, pid

    @property
    def returncode(self) -> Optional[int]:
        return self.server._rcs.get(self.pid)

    def poll(self) -> Optional[int]:
        self.server._pump(0)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.pid, timeout)
            self.server._pump(left)
        return self.returncode

    def kill_group(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class ToolServer:
    """A ``tool_server.py`` subprocess with environment ``env``."""

    def __init__(self, env: Dict[str, str], cwd: str,
                 preload: Sequence[str] = PRELOAD):
        """Start the server; :meth:`wait_ready` waits for its imports."""
        self.env = dict(env)
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *preload], cwd=cwd,
            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buf = b''
        self._rcs: Dict[int, int] = {}
        self._acks: Dict[int, int] = {}
        self._next_id = 0
        self._ready = None

    def wait_ready(self, timeout: float = 300) -> 'ToolServer':
        deadline = time.monotonic() + timeout
        while self._ready is None:
            assert self._proc.poll() is None, 'tool server failed to start'
            assert time.monotonic() < deadline, 'tool server start timeout'
            self._pump(1.0)
        return self

    def _pump(self, timeout: float) -> None:
        """Read the server's replies that arrive within ``timeout`` s."""
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(timeout, 0))
        if not ready:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError('tool server exited')
        self._buf += chunk
        while b'\n' in self._buf:
            line, self._buf = self._buf.split(b'\n', 1)
            msg = json.loads(line)
            if 'ready' in msg:
                self._ready = msg['ready']
            elif 'rc' in msg:
                self._rcs[msg['pid']] = msg['rc']
            else:  # a new child: forget an earlier one with its pid
                self._rcs.pop(msg['pid'], None)
                self._acks[msg['id']] = msg['pid']

    def popen(self, argv: List[str], cwd: str, log: str,
              env: Optional[Dict[str, str]] = None) -> ToolProcess:
        """Start ``python argv[0] argv[1:]`` in ``cwd`` with environment
        ``env`` (default: the server's), stdout and stderr appended to the
        file ``log``. ``env`` may differ from the server's only in
        :data:`VOLATILE_ENV`."""
        if env is not None:
            assert _stable(env) == _stable(self.env), \
                'the server was started with another environment'
        self.wait_ready()
        open(log, 'a').close()  # as Popen(stdout=open(log, 'a'))
        rid = self._next_id
        self._next_id += 1
        self._proc.stdin.write(json.dumps(dict(
            id=rid, argv=list(argv), cwd=cwd, env=env,
            log=os.path.abspath(log))).encode() + b'\n')
        self._proc.stdin.flush()
        deadline = time.monotonic() + 60
        while rid not in self._acks:
            assert time.monotonic() < deadline, 'tool server did not fork'
            self._pump(1.0)
        return ToolProcess(self, self._acks.pop(rid))

    def run(self, argv: List[str], cwd: str, log: str,
            env: Optional[Dict[str, str]] = None,
            timeout: float = 600) -> Tuple[int, str]:
        """Run to completion (as :meth:`popen`); returns the exit status
        and the output (the part of ``log`` this run wrote)."""
        start = os.path.getsize(log) if os.path.exists(log) else 0
        proc = self.popen(argv, cwd, log, env)
        try:
            rc = proc.wait(timeout)
        finally:
            proc.kill_group()
        with open(log, errors='replace') as f:
            f.seek(start)
            return rc, f.read()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()


_SERVERS: Dict[Tuple, ToolServer] = {}


def _stable(env: Dict[str, str]) -> Tuple:
    return tuple(sorted((k, v) for k, v in env.items()
                        if k not in VOLATILE_ENV))


def shared_servers(env: Dict[str, str], cwd: str,
                   n: int = 1) -> List[ToolServer]:
    """``n`` process-wide servers for ``env`` (but
    :data:`VOLATILE_ENV`; started together on first use, closed at exit).
    They are separate interpreters, so they differ in what differs between
    two fresh interpreters (e.g. the string hash seed, unless
    ``PYTHONHASHSEED`` fixes it)."""
    keys = [(_stable(env), cwd, slot) for slot in range(n)]
    for key in keys:
        server = _SERVERS.get(key)
        if server is None or server._proc.poll() is not None:
            if not _SERVERS:
                import atexit
                atexit.register(_close_all)
            _SERVERS[key] = ToolServer(env, cwd)
    return [_SERVERS[key].wait_ready() for key in keys]


def shared_server(env: Dict[str, str], cwd: str) -> ToolServer:
    """The first of :func:`shared_servers`."""
    return shared_servers(env, cwd, 1)[0]


def _close_all() -> None:
    for server in _SERVERS.values():
        server.close()
    _SERVERS.clear()


if __name__ == '__main__':
    _serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown of torch & co. (~1 s)
