"""Image loaders: put the config's images into guest memory and say how to enter them."""

from .guest import load_guest, plan_guest
from .images import image_list, image_problems, missing_images, write_image
from .plan import ImagePlan
from .x86 import load_x86_kernel

__all__ = ["ImagePlan", "image_list", "image_problems", "load_guest", "load_x86_kernel", "missing_images",
           "plan_guest", "write_image"]
