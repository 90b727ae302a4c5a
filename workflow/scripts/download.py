"""Stage: put an official MedMNIST file in data/raw (local root first, else download)."""

from ssmvit import cli
from ssmvit.datasets import fetch_raw


def main():
    p = cli.parser(__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--size", required=True, type=int, help="official image size of the file (28, 64, 128, 224)")
    p.add_argument("--out", default=None, help="default: data/raw/{dataset}_{size}.npz")
    args = p.parse_args()
    info = fetch_raw(cli.config_from(args), args.dataset, args.size, args.out)
    print(f"{info['path']}: md5 {info['md5']} ok, from {info['origin']}")


if __name__ == "__main__":
    cli.run(main)
