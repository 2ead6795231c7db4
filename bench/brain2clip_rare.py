"""Summary of bench/brain2clip_rare.sh: per rare_weight and model, the rare values' category
accuracy (beige background, cross, orange) against the mean over the common values of the same
group, with their training shares; and each model's averaged top-1/top-5 and closest caption."""
import sys

import pyarrow.parquet as pq

RARE = {"background": "beige", "kind": "cross", "colour": "orange"}


def table(path):
    t = pq.read_table(path).to_pydict()
    rows = {}
    for model, subject, paradigm, metric, value in zip(
        t["model"], t["subject"], t["paradigm"], t["metric"], t["value"]
    ):
        if subject == "all" and paradigm == "averaged":
            rows[(model, metric)] = value
    return rows


def main(out, weights):
    print("weight  model              top1   top5   caption | group       rare acc (train share)"
          "  common acc (train share)")
    for w in weights:
        rows = table(f"{out}/metrics-{w}.parquet")
        models = sorted({m for m, _ in rows}, key=lambda m: (m != "ridge", m))
        for model in models:
            get = lambda metric: rows.get((model, metric), float("nan"))
            head = (f"{w:<7} {model:<18} {100 * get('top1'):5.1f}  {100 * get('top5'):5.1f}  "
                    f"{100 * get('caption'):6.1f}")
            for i, (group, rare) in enumerate(RARE.items()):
                values = sorted({m.split(".")[2] for mm, m in rows
                                 if mm == model and m.startswith(f"category.{group}.")})
                common = [v for v in values if v != rare]
                acc = lambda v: rows.get((model, f"category.{group}.{v}.accuracy"), float("nan"))
                share = lambda v: rows[(model, f"category.{group}.{v}.train_frequency")]
                c_acc = sum(acc(v) for v in common) / len(common)
                c_share = sum(share(v) for v in common) / len(common)
                prefix = head if i == 0 else " " * len(head)
                print(f"{prefix} | {group:<11} {100 * acc(rare):5.1f} ({100 * share(rare):4.1f} %)"
                      f"       {100 * c_acc:5.1f} ({100 * c_share:4.1f} %)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
