"""Which int8 quantisation keeps a trained museum's answers: options compared on a real set.

usage: quantisation_options.py FP32_ONNX DATASET --out DIR --options minmax,percentile,entropy,...
Options: minmax | percentile | entropy, with a suffix: -head (last backbone conv kept float),
-stem, -ends, -last3, -nodw (depthwise kept float), -noadd, -c128 (128 calibration references),
-vN (N/2 references + N/2 phone views). Prints per option the mP@1 drop against its own int8
references and as served (its queries in fp32's gallery), lost/gained queries and query cosine.
"""
import argparse, json, tempfile, time
from pathlib import Path
import numpy as np, onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from muselens.export.precision import (ImageCalibrationReader, _quiet_quantizer, INT8_OP_TYPES, calibration_images,
                                       retrieval_metrics, query_hits, descriptor_agreement)
from muselens.export.onnx_surgery import head_nodes, shape_nodes, prune_unused
from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.data.images import SkippedImages
from muselens.runtime.engine import OrtDescriber

p = argparse.ArgumentParser()
p.add_argument("fp32"); p.add_argument("data"); p.add_argument("--out", required=True)
p.add_argument("--options", default="minmax,percentile,entropy,minmax-ends,minmax-head")
p.add_argument("--calib", type=int, default=32)
a = p.parse_args()
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
museum = MuseumDataset.load(a.data)
base = OrtDescriber(a.fp32)
sk = SkippedImages()
def describe(path):
    d = OrtDescriber(path)
    r, rid = d.describe_records(museum.references, sk)
    q, qid = d.describe_records(museum.queries, sk)
    return r, rid, q, qid
t = time.time(); R, RID, Q, QID = describe(a.fp32); print("fp32 described", round(time.time()-t), "s", flush=True)
m32 = retrieval_metrics(R, RID, Q, QID); h32 = query_hits(R, RID, Q, QID)
print("fp32", {k: round(v, 4) for k, v in m32.items() if isinstance(v, float)}, flush=True)
model = onnx.load(a.fp32)
convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in set(head_nodes(model))]
base_ex = set(head_nodes(model)) | set(shape_nodes(model))
calib = calibration_images(museum, base, limit=a.calib)
results = {"fp32": m32}
for opt in a.options.split(","):
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[opt.split("-")[0]]
    ex = set(base_ex)
    if opt.endswith("-ends"): ex |= {convs[0], convs[-1]}
    if opt.endswith("-head"): ex |= {convs[-1]}
    if opt.endswith("-stem"): ex |= {convs[0]}
    if opt.endswith("-last3"): ex |= set(convs[-3:])
    if opt.endswith("-nodw"):
        groups = {n.name: next((x.i for x in n.attribute if x.name == "group"), 1) for n in model.graph.node if n.op_type == "Conv"}
        ex |= {c for c in convs if groups[c] > 1}
    ops = [o for o in INT8_OP_TYPES if not (opt.endswith("-noadd") and o == "Add")]
    images = calib if not opt.endswith("-c128") else calibration_images(museum, base, limit=128)
    if "-v" in opt:
        from muselens.core.synthetic.phone import phone_view
        n = int(opt.split("-v")[1]); rng = np.random.default_rng(0)
        half = calibration_images(museum, base, limit=n // 2)
        from muselens.core.data.images import read_image
        refs = museum.references
        picks = sorted({int(i) for i in np.linspace(0, len(refs) - 1, num=min(n - len(half), len(refs)))})
        images = half + [base.resize(phone_view(read_image(refs[i].path), rng)) for i in picks]
    extra = {"CalibPercentile": 99.999} if method == CalibrationMethod.Percentile else {}
    dst = out / f"{opt}.onnx"
    t = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "n.onnx"; onnx.save(model, str(named))
        with _quiet_quantizer():
            quantize_static(str(named), str(dst), ImageCalibrationReader(images), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=ops, nodes_to_exclude=sorted(ex),
                            calibrate_method=method, extra_options=extra)
    qt = time.time() - t
    r, rid, q, qid = describe(dst)
    m = retrieval_metrics(r, rid, q, qid); h = query_hits(r, rid, q, qid)
    ag = descriptor_agreement(Q, q, R)
    served = retrieval_metrics(R, RID, q, qid); hs = query_hits(R, RID, q, qid)
    res = {**m, "quantize_s": round(qt, 1), "drop_points": round(100*(m32["mp_at_1"]-m["mp_at_1"]), 3),
           "lost": int(((h32 == 1) & (h == 0)).sum()), "gained": int(((h32 == 0) & (h == 1)).sum()),
           "query_cos_mean": ag["mean_cosine_to_fp32"], "query_cos_p05": ag["p05_cosine_to_fp32"],
           "top1_agree": ag["top1_agreement_with_fp32"],
           "served_mp_at_1": served["mp_at_1"], "served_drop": round(100*(m32["mp_at_1"]-served["mp_at_1"]), 3),
           "served_lost": int(((h32 == 1) & (hs == 0)).sum()), "served_gained": int(((h32 == 0) & (hs == 1)).sum())}
    results[opt] = res
    print(opt, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()
                if k in ("mp_at_1", "drop_points", "lost", "gained", "query_cos_mean", "query_cos_p05", "top1_agree", "quantize_s", "served_drop", "served_lost", "served_gained")}, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
