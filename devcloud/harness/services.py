"""The processes that make up devcloud, in start order, with how to check each."""

from __future__ import annotations

from dataclasses import dataclass, field

from .layout import (
    HOST,
    PORTS,
    RABBIT_PASSWORD,
    RABBIT_USER,
    State,
    conversion_pairs,
    neutron_workers,
    sshd_keys,
)
from .proc import http_ok, port_open


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    url: str | None = None  # HTTP health URL; else the port must accept connections
    # group: services in one group start together; a group waits for the previous one
    group: int = 0

    def healthy(self) -> bool:
        if self.url:
            return http_ok(self.url)
        if self.port:
            return port_open(self.port)
        return True


def _gunicorn(state: State, name: str, app: str, port: int, env: dict[str, str],
              workers: int = 1) -> Service:
    return Service(
        name=name,
        argv=[str(state.bin / "gunicorn"), "--bind", f"{HOST}:{port}",
              "--worker-class", "gthread", "--workers", str(workers), "--threads", "8",
              # gunicorn's 2 s default keep-alive races openstacksdk's 2 s polling and
              # yields "connection reset by peer"; outlive the client's idle interval.
              "--keep-alive", "65", "--timeout", "600", "--graceful-timeout", "5",
              "--name", f"devcloud-{name}", app],
        env=env, port=port, url=f"http://{HOST}:{port}/", group=2,
    )


def _console(state: State, name: str, script: str, conf: str) -> Service:
    return Service(name=name, argv=[str(state.bin / script), "--config-file",
                                    str(state.etc / conf)], group=3)


def all_services(state: State) -> list[Service]:
    etc = state.etc
    rabbit_env = {
        "HOME": str(state.rabbit),  # .erlang.cookie lives here
        "RABBITMQ_CONF_ENV_FILE": str(etc / "rabbitmq" / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(etc / "rabbitmq" / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(etc / "rabbitmq" / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(etc / "rabbitmq" / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(state.rabbit / "mnesia"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(state.rabbit / "plugins-expand"),
        "RABBITMQ_PID_FILE": str(state.rabbit / "rabbitmq.pid"),
        "RABBITMQ_LOG_BASE": str(state.logs),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_NODENAME": "devcloud@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(PORTS["rabbitmq"]),
        "RABBITMQ_DIST_PORT": str(PORTS["rabbitmq-dist"]),
        "RABBITMQ_DEFAULT_USER": RABBIT_USER,
        "RABBITMQ_DEFAULT_PASS": RABBIT_PASSWORD,
        # Our own epmd (started by us, on loopback, on a private port) instead of the
        # system-wide daemon rabbitmq would otherwise spawn on 0.0.0.0:4369.
        "ERL_EPMD_PORT": str(PORTS["epmd"]),
        "ERL_EPMD_ADDRESS": HOST,
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    svcs = [
        Service("mariadb", ["/usr/sbin/mariadbd", f"--defaults-file={etc / 'my.cnf'}"],
                port=PORTS["mariadb"], group=0),
        Service("epmd", ["/usr/bin/epmd", "-address", HOST, "-port", str(PORTS["epmd"])],
                env={"ERL_EPMD_ADDRESS": HOST}, port=PORTS["epmd"], group=0),
        Service("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=rabbit_env,
                port=PORTS["rabbitmq"], group=0),
        _gunicorn(state, "keystone", "devcloud_ext.wsgi_keystone:application",
                  PORTS["keystone"], {"OS_KEYSTONE_CONFIG_DIR": str(etc / "keystone")}),
        _gunicorn(state, "placement", "placement.wsgi.api:application", PORTS["placement"],
                  {"OS_PLACEMENT_CONFIG_DIR": str(etc / "placement")}),
        _gunicorn(state, "glance", "glance.wsgi.api:application", PORTS["glance"],
                  {"OS_GLANCE_CONFIG_DIR": str(etc / "glance")}),
        _gunicorn(state, "neutron", "devcloud_ext.wsgi_neutron:application", PORTS["neutron"],
                  {"DEVCLOUD_CONF": str(etc / "neutron" / "neutron.conf")},
                  neutron_workers()),
        _gunicorn(state, "cinder-api", "devcloud_ext.wsgi_cinder:application",
                  PORTS["cinder-api"], {"DEVCLOUD_CONF": str(etc / "cinder" / "cinder.conf")}),
        _gunicorn(state, "nova-api", "devcloud_ext.wsgi_nova:application", PORTS["nova-api"],
                  {"OS_NOVA_CONFIG_DIR": str(etc / "nova")}),
        _console(state, "nova-conductor", "nova-conductor", "nova/nova.conf"),
        _console(state, "nova-scheduler", "nova-scheduler", "nova/nova.conf"),
        Service("nova-compute", [str(state.bin / "python"), "-m", "devcloud_ext.nova_compute",
                                 "--config-file", str(etc / "nova" / "nova.conf")], group=3),
        _console(state, "cinder-scheduler", "cinder-scheduler", "cinder/cinder.conf"),
        _console(state, "cinder-volume", "cinder-volume", "cinder/cinder.conf"),
    ]
    for s in svcs:  # our plugins find the state directory through this
        s.env.setdefault("DEVCLOUD_STATE", str(state.root))
    svcs[3].group = 1  # keystone first: the others need its service users at start-up
    for key in sshd_keys(conversion_pairs()):
        # sshd re-execs itself, so it needs its absolute path; -D stays in the foreground.
        svcs.append(Service(f"sshd-{key}", ["/usr/sbin/sshd", "-D", "-e", "-f",
                                             str(state.ssh / key / "sshd_config")],
                            port=PORTS[f"sshd-{key}"], group=4))
    return svcs


def by_name(state: State) -> dict[str, Service]:
    return {s.name: s for s in all_services(state)}

