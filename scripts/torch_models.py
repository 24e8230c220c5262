"""PyTorch twins of stride's zoo models (framework/model_spec.cpp), written once for every script.

Each module is registered under stride's layer name, so stride's /params/<layer>/<param> (docs/checkpoint.md)
is state_dict()["<layer>.<param>"] here, and PyTorch's default init of a freshly built twin is the
distribution of stride's `pytorch` init. Layers without parameters (pools, activations) may be modules or
functional calls: only the forward pass and the parameter names have to agree.

Used by scripts/load_checkpoint_torch.py (stride -> torch), scripts/torch_to_stride.py (torch -> stride),
tests/torch_one_step.py and bench/torch_reference.py:

    sys.path.insert(0, "<repo>/scripts")
    from torch_models import build, LeNet5
    model = build({"name": "resnet8", "input": [3, 32, 32]})
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """Caffe's examples/mnist/lenet_train_test.prototxt: no nonlinearity between the conv/pool stages, as Caffe
    has it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(50 * 4 * 4, 500)
        self.ip2 = nn.Linear(500, 10)

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.ip2(F.relu(self.ip1(torch.flatten(x, 1))))


class Cifar10Quick(nn.Module):
    """Caffe's examples/cifar10/cifar10_quick_train_test.prototxt; Caffe pools in ceil mode (32 -> 16 -> 8 -> 4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.pool2 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool3 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.ip1 = nn.Linear(64 * 4 * 4, 64)
        self.ip2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.pool1(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = self.pool3(F.relu(self.conv3(x)))
        return self.ip2(self.ip1(torch.flatten(x, 1)))


class ResNet(nn.Module):
    """He et al. 2016, section 4.2 (6n+2 layers): resnet8 is n = 1, resnet20 n = 3. stride's names are flat
    ("s2b1_conv1"), so the modules are registered under exactly those names."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, width in enumerate((16, 32, 64)):
            for b in range(n):
                p = f"s{s + 1}b{b + 1}_"
                stride = 2 if s > 0 and b == 0 else 1
                setattr(self, p + "conv1", nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False))
                setattr(self, p + "bn1", nn.BatchNorm2d(width))
                setattr(self, p + "conv2", nn.Conv2d(width, width, 3, padding=1, bias=False))
                setattr(self, p + "bn2", nn.BatchNorm2d(width))
                if stride != 1:
                    setattr(self, p + "down_conv", nn.Conv2d(cin, width, 1, stride=2, bias=False))
                    setattr(self, p + "down_bn", nn.BatchNorm2d(width))
                cin = width
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(3):
            for b in range(self.n):
                p = f"s{s + 1}b{b + 1}_"
                m = lambda name: getattr(self, p + name)
                y = F.relu(m("bn1")(m("conv1")(x)))
                y = m("bn2")(m("conv2")(y))
                shortcut = m("down_bn")(m("down_conv")(x)) if hasattr(self, p + "down_conv") else x
                x = F.relu(y + shortcut)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MLP(nn.Module):
    """The lecture's fully connected baseline; `features` is C*H*W of the input."""

    def __init__(self, features):
        super().__init__()
        self.fc1 = nn.Linear(features, 256)
        self.drop1 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(self.drop1(F.relu(self.fc1(torch.flatten(x, 1)))))


ZOO = ("lenet5", "cifar10_quick", "resnet8", "resnet20", "mlp")


def build(spec):
    """The twin of a stride model spec (a dict, as `stride summary --print-spec` prints it), chosen by its
    "name"; the zoo models only. mlp needs the spec's "input". Raises ValueError for any other model."""
    name = spec.get("name")
    if name == "lenet5":
        return LeNet5()
    if name == "cifar10_quick":
        return Cifar10Quick()
    if name == "resnet8":
        return ResNet(1)
    if name == "resnet20":
        return ResNet(3)
    if name == "mlp":
        if "input" not in spec:
            raise ValueError("model 'mlp' needs the spec's \"input\" shape to size its first layer")
        features = 1
        for d in spec["input"]:
            features *= int(d)
        return MLP(features)
    raise ValueError(f"no torch twin of model {name!r} (zoo models only: {', '.join(ZOO)})")
