"""Render: from the cluster model, a role or a node, `profiles/` and `overlays/`, compute what an image gets.

Pure: reads the repository's data (and the secrets directory), writes nothing into any image.
"""

from builder.render.cluster_secrets import munge_key
from builder.render.configtxt import apply_cmdline, apply_config_txt
from builder.render.image_file import ImageFile
from builder.render.plan import RenderPlan, render_plan
from builder.render.profiles import Profile, load_profile

__all__ = ["ImageFile", "Profile", "RenderPlan", "apply_cmdline", "apply_config_txt", "load_profile", "munge_key",
           "render_plan"]
