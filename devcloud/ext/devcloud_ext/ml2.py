"""An ML2 mechanism driver that binds every port.

devcloud runs Neutron without agents, so no real driver would bind ports and Nova would fail
the boot with `binding_failed`. This binds each port on its first segment as an OVS port and
marks it ACTIVE: enough for Nova's fake driver, and nothing touches the host network.
"""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self) -> None:
        pass

    def bind_port(self, context) -> None:  # type: ignore[no-untyped-def]
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True},
                                status=constants.PORT_STATUS_ACTIVE)
            return

    @property
    def connectivity(self) -> str:
        return portbindings.CONNECTIVITY_L2
