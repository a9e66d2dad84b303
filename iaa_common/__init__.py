"""What every layer of the project shares (docs/DESIGN.md, "Layers"): the one exception type
that the command line turns into a one-line message and exit code 2, and the constants of the
task itself. Nothing here imports anything of the project."""

NUM_BINS = 10  # rating bins: AVA's ratings 1..10; every model's head has one output per bin
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the input statistics of ImageNet-trained backbones
IMAGENET_STD = (0.229, 0.224, 0.225)


class UserError(Exception):
    """Bad input from the user: a file, a name or a setting. The message names the culprit."""
