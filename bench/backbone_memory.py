"""Peak RSS of a CPU training step per image, for the estimates of
`cpu_workers = "auto"` (src/coordinator/estimate.rs).

For each backbone: two fresh processes train STEPS SGD-with-momentum steps at
224 px, batch 8 and batch 16, on THREADS threads; the difference of their
peak RSS over 8 images is the activation memory a training step keeps per
image. Prints one line per backbone: name, peak RSS at 8 and 16, per image.

usage: backbone_memory.py [THREADS] BACKBONE...
"""
import resource
import subprocess
import sys

CHILD = r'''
import resource, sys, torch, torchvision, torch.nn.functional as F
name, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
m = getattr(torchvision.models, name)(weights=None, num_classes=10).train()
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 10, (batch,))
for _ in range(2):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(m(x), y).backward()
    opt.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
'''


def peak(name, batch, threads):
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(batch), str(threads)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    args = sys.argv[1:]
    threads = int(args.pop(0)) if args and args[0].isdigit() else 2
    for name in args:
        a, b = peak(name, 8, threads), peak(name, 16, threads)
        print(f"{name:20} batch8 {a / 1e9:6.2f} GB  batch16 {b / 1e9:6.2f} GB  per image {(b - a) / 8 / 1e6:6.0f} MB", flush=True)
