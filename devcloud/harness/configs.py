"""Render every service's configuration under <state>/etc.

Rewritten on each `up` (cheap, and a changed harness takes effect on the next start). Only the
settings that differ from upstream defaults are written; comments say why each one matters.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .layout import (
    DB_PASSWORD,
    DB_USER,
    HOST,
    PORTS,
    REGION,
    SERVICE_PASSWORD,
    State,
    conversion_pairs,
    db_url,
    keystone_url,
    sshd_keys,
    transport_url,
)


def _ini(sections: dict[str, dict[str, object]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {v}" for k, v in values.items())
        out.append("")
    return "\n".join(out)


def _service_auth(user: str) -> dict[str, object]:
    """keystoneauth password options for a service user in the `service` project."""
    return {
        "auth_url": keystone_url(), "auth_type": "password",
        "project_domain_name": "Default", "user_domain_name": "Default",
        "project_name": "service", "username": user, "password": SERVICE_PASSWORD,
        "region_name": REGION,
    }


def _authtoken(user: str) -> dict[str, object]:
    return {
        "www_authenticate_uri": keystone_url(),
        **_service_auth(user),
        # Validated tokens are cached in-process; no memcached to run.
        "token_cache_time": 300,
        # Nova/Cinder check service tokens on attach/detach (the 2023 volume CVE fix).
        "service_token_roles": "service",
        "service_token_roles_required": "true",
    }


def _common(state: State, service: str) -> dict[str, object]:
    return {
        "transport_url": transport_url(),
        "debug": "false",
        "log_dir": "",  # oslo.log writes to stderr, which proc.start sends to logs/<svc>.log
        "use_stderr": "true",
        "state_path": state.data(service),
    }


def _locks(state: State, service: str) -> dict[str, object]:
    return {"lock_path": state.data(service) / "locks"}


def write_all(state: State) -> None:
    site_etc = state.venv / "etc"  # data files shipped in the wheels (paste ini, filters)
    for svc in ("keystone", "glance", "placement", "nova", "neutron", "cinder", "rabbitmq"):
        (state.etc / svc).mkdir(parents=True, exist_ok=True)
        (state.data(svc) / "locks").mkdir(parents=True, exist_ok=True)
    _mariadb(state)
    _rabbitmq(state)
    _keystone(state)
    _glance(state, site_etc)
    _placement(state)
    _nova(state, site_etc)
    _neutron(state, site_etc)
    _cinder(state, site_etc)
    _sshd(state)


def _mariadb(state: State) -> None:
    (state.etc / "my.cnf").write_text(_ini({"mysqld": {
        "datadir": state.mysql_data,
        "socket": state.mysql_socket,
        "pid-file": state.run / "mysqld.pid.internal",
        "port": PORTS["mariadb"],
        "bind-address": HOST,
        "user": "root",
        "skip-name-resolve": "ON",
        "skip-log-bin": "ON",
        # Every service opens a pool per process; the default 151 runs out.
        "max_connections": 2000,
        "character-set-server": "utf8mb4",
        "collation-server": "utf8mb4_general_ci",
        # A test cloud trades durability for speed: no fsync per commit.
        "innodb_flush_log_at_trx_commit": 2,
        "innodb_doublewrite": 0,
        "innodb_buffer_pool_size": "256M",
        "sync_binlog": 0,
    }, "client": {"socket": state.mysql_socket, "user": "root"}}))


def _rabbitmq(state: State) -> None:
    d = state.etc / "rabbitmq"
    (d / "rabbitmq.conf").write_text("\n".join([
        f"listeners.tcp.default = {HOST}:{PORTS['rabbitmq']}",
        "default_user = devcloud",
        "default_pass = devcloud-rabbit",
        "loopback_users = none",
        # Disk alarm would block publishers on a nearly full dev disk; not our concern here.
        "disk_free_limit.absolute = 50MB",
        "log.console = true",
        "log.file = false",
        "",
    ]))
    (d / "enabled_plugins").write_text("[].\n")


def _keystone(state: State) -> None:
    (state.etc / "keystone" / "keystone.conf").write_text(_ini({
        "DEFAULT": {"debug": "false", "use_stderr": "true"},
        "database": {"connection": db_url("keystone")},
        "token": {"provider": "fernet", "expiration": 86400},
        "fernet_tokens": {"key_repository": state.data("keystone") / "fernet-keys"},
        "credential": {"key_repository": state.data("keystone") / "credential-keys"},
        # bcrypt's default 12 rounds costs ~0.3 s CPU per password auth on 2 cores.
        "identity": {"password_hash_rounds": 4},
        # Token validation (every API call of every service) re-reads roles, catalog and
        # revocations from the DB; an in-process cache cuts Keystone's CPU several-fold.
        "cache": {"enabled": "true", "backend": "oslo_cache.dict", "expiration_time": 600},
    }))


def _glance(state: State, site_etc: Path) -> None:
    g = state.data("glance")
    shutil.copy(site_etc / "glance" / "glance-api-paste.ini", state.etc / "glance")
    (state.etc / "glance" / "glance-api.conf").write_text(_ini({
        "DEFAULT": {"debug": "false", "use_stderr": "true", "enabled_backends": "fs:file",
                    "transport_url": transport_url()},
        "database": {"connection": db_url("glance")},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": g / "images"},
        "os_glance_staging_store": {"filesystem_store_datadir": g / "staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": g / "tasks"},
        "keystone_authtoken": _authtoken("glance"),
        "paste_deploy": {"flavor": "keystone",
                         "config_file": state.etc / "glance" / "glance-api-paste.ini"},
        "oslo_concurrency": _locks(state, "glance"),
        "oslo_messaging_notifications": {"driver": "noop"},
    }))


def _placement(state: State) -> None:
    (state.etc / "placement" / "placement.conf").write_text(_ini({
        "DEFAULT": {"debug": "false", "use_stderr": "true"},
        "placement_database": {"connection": db_url("placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken("placement"),
    }))


def _nova(state: State, site_etc: Path) -> None:
    shutil.copy(site_etc / "nova" / "api-paste.ini", state.etc / "nova")
    n = state.data("nova")
    (n / "instances").mkdir(parents=True, exist_ok=True)
    (state.etc / "nova" / "nova.conf").write_text(_ini({
        "DEFAULT": {
            **_common(state, "nova"),
            "host": "devcloud",
            "my_ip": HOST,
            "instances_path": n / "instances",
            # Our subclass of fake.FakeDriverWithoutFakeNodes (plain FakeDriver refuses to
            # restart on existing data): root disks and by-id links on disk, state persisted.
            "compute_driver": "devcloud_fake.DevcloudFakeDriver",  # see devcloud_ext.nova_compute
            "osapi_compute_listen": HOST,
            "metadata_listen": HOST,
            "enabled_apis": "osapi_compute",
            # The fake driver never sends vif-plugged events.
            "vif_plugging_is_fatal": "false",
            "vif_plugging_timeout": 0,
            "instance_build_timeout": 600,
            "heal_instance_info_cache_interval": -1,
            "sync_power_state_interval": 60,
            "compute_monitors": "",
            "reserved_host_disk_mb": 0,
            # Boot-from-volume on our file driver is fast; do not wait minutes for it.
            "block_device_allocate_retries": 120,
            "block_device_allocate_retries_interval": 1,
        },
        "wsgi": {"api_paste_config": state.etc / "nova" / "api-paste.ini"},
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": db_url("nova_api")},
        "database": {"connection": db_url("nova")},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1, "discover_hosts_in_cells_interval": 5},
        "keystone_authtoken": _authtoken("nova"),
        "service_user": {**_service_auth("nova"), "send_service_user_token": "true"},
        "placement": _service_auth("nova"),
        "neutron": {**_service_auth("nova"), "service_metadata_proxy": "false"},
        "cinder": {**_service_auth("nova"), "os_region_name": REGION},
        "glance": {"region_name": REGION},
        "oslo_concurrency": _locks(state, "nova"),
        "oslo_messaging_notifications": {"driver": "noop"},
        "vnc": {"enabled": "false"},
        "spice": {"enabled": "false"},
        "serial_console": {"enabled": "false"},
        # The fake virt driver has no images to cache; the periodic manager only warns.
        "image_cache": {"manager_interval": -1},
        "quota": {"driver": "nova.quota.DbQuotaDriver"},
    }))


def _neutron(state: State, site_etc: Path) -> None:
    shutil.copy(site_etc / "neutron" / "api-paste.ini", state.etc / "neutron")
    (state.etc / "neutron" / "neutron.conf").write_text(_ini({
        "DEFAULT": {
            **_common(state, "neutron"),
            "host": "devcloud",
            "core_plugin": "ml2",
            "service_plugins": "router",
            "auth_strategy": "keystone",
            "api_paste_config": state.etc / "neutron" / "api-paste.ini",
            "allow_overlapping_ips": "true",
            # No agents: nothing will ever report port status to Nova, and Nova's fake
            # driver does not wait for it.
            "notify_nova_on_port_status_changes": "false",
            "notify_nova_on_port_data_changes": "false",
            "dhcp_agent_notification": "false",
            "api_workers": 1,
            "rpc_workers": 0,
        },
        "database": {"connection": db_url("neutron")},
        "keystone_authtoken": _authtoken("neutron"),
        "nova": _service_auth("nova") | {"username": "neutron"},
        "ml2": {
            "type_drivers": "flat,vlan,vxlan",
            "tenant_network_types": "vxlan",
            # Ours: binds every port (vif_type ovs, ACTIVE) so Nova sees a bound port.
            "mechanism_drivers": "devcloud",
            "extension_drivers": "port_security",
        },
        "ml2_type_flat": {"flat_networks": "public"},
        "ml2_type_vlan": {"network_vlan_ranges": "public"},
        "ml2_type_vxlan": {"vni_ranges": "1:10000"},
        "oslo_concurrency": _locks(state, "neutron"),
        "oslo_messaging_notifications": {"driver": "noop"},
    }))


def _cinder(state: State, site_etc: Path) -> None:
    shutil.copy(site_etc / "cinder" / "api-paste.ini", state.etc / "cinder")
    c = state.data("cinder")
    (c / "conversion").mkdir(parents=True, exist_ok=True)
    (state.etc / "cinder" / "cinder.conf").write_text(_ini({
        "DEFAULT": {
            **_common(state, "cinder"),
            "host": "devcloud",
            "my_ip": HOST,
            "auth_strategy": "keystone",
            "api_paste_config": state.etc / "cinder" / "api-paste.ini",
            "enabled_backends": "file",
            "glance_api_servers": f"http://{HOST}:{PORTS['glance']}",
            "image_conversion_dir": c / "conversion",
            # Without it every `?name=` filter answers 400 and openstacksdk's find_volume
            # breaks; the wheel ships the default file.
            "resource_query_filters_file": site_etc / "cinder" / "resource_filters.json",
            "osapi_volume_workers": 1,
            "report_interval": 10,
            "periodic_interval": 30,
        },
        "database": {"connection": db_url("cinder")},
        "keystone_authtoken": _authtoken("cinder"),
        "nova": _service_auth("cinder") | {"interface": "public"},
        "file": {
            "volume_driver": "devcloud_ext.cinder_file.FileVolumeDriver",
            "volume_backend_name": "file",
        },
        "coordination": {"backend_url": f"file://{c / 'coordination'}"},
        "oslo_concurrency": _locks(state, "cinder"),
        "oslo_messaging_notifications": {"driver": "noop"},
    }))


def _sshd(state: State) -> None:
    for key in sshd_keys(conversion_pairs()):
        d = state.ssh / key
        d.mkdir(parents=True, exist_ok=True)
        (d / "sshd_config").write_text("\n".join([
            f"ListenAddress {HOST}",
            f"Port {PORTS['sshd-' + key]}",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {state.ssh / 'users'}/%u/authorized_keys",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The repo checkout may be group-writable; this is a private loopback sshd.
            "StrictModes no",
            "PrintMotd no",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            f"SetEnv DEVCLOUD_CONVERSION_HOST={key}",
            "",
        ]))


def db_names() -> list[str]:
    return ["keystone", "glance", "placement", "neutron", "cinder", "nova_api", "nova_cell0",
            "nova"]


def db_bootstrap_sql() -> str:
    stmts = [f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4;" for db in db_names()]
    stmts += [
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{HOST}' IDENTIFIED BY '{DB_PASSWORD}';",
        f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'{HOST}';",
        "FLUSH PRIVILEGES;",
    ]
    return "\n".join(stmts)
