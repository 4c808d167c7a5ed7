"""The one "multiple of 64" rule of image sizes fed to the VAE/U-Net."""

import pytest

from diffseg.core.errors import DiffsegError
from diffseg.core.geometry import check_unet_size


@pytest.mark.parametrize("size", [(64, 64), (1024, 512), (1280, 704), (64, 1984)])
def test_multiples_of_64_pass_as_ints(size):
    out = check_unet_size((float(size[0]), size[1]))
    assert out == size and all(type(v) is int for v in out)


@pytest.mark.parametrize("size", [(100, 64), (64, 100), (32, 32), (1280, 720)])
def test_other_sizes_are_refused_naming_the_option(size):
    with pytest.raises(DiffsegError) as err:
        check_unet_size(size, "--resolution")
    assert str(err.value).startswith(f"--resolution {size[0]}x{size[1]}: ") and "multiples of 64" in str(err.value)
