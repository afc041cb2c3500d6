"""SSL task plugins; importing this package registers the built-in tasks."""

from fedsim.tasks import audio  # noqa: F401
from fedsim.tasks import cardio  # noqa: F401
from fedsim.tasks import audio_image  # noqa: F401
from fedsim.tasks import image  # noqa: F401
from fedsim.tasks import synthetic  # noqa: F401
from fedsim.tasks import video  # noqa: F401
