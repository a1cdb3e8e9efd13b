"""Independent reference figures (../shared/reference/mobilevit_family.md) used as test oracles.

PARAMS: section 3.6, exact per-stage parameter counts of the reference implementation (timm for v1
and v2), 1000 classes: (stem, layer1, layer2, layer3, layer4, layer5, exp conv, classifier, total).
FVCORE_MACS: section 4.2, fvcore totals at 256x256 with unfused attention (timm with
TIMM_FUSED_ATTN=0 for v1/v2; the reference's clean-room model for v3), in MACs.
"""

PARAMS = {
    "mobilevit_xxs": (464, 1472, 7696, 139888, 341824, 433440, 26240, 321000, 1272024),
    "mobilevit_xs": (464, 3968, 54048, 297152, 699152, 840432, 37632, 385000, 2317848),
    "mobilevit_s": (464, 3968, 86528, 656768, 1772032, 2314192, 103680, 641000, 5578632),
    "mobilevitv2_050": (464, 2016, 25280, 103426, 387460, 594947, 0, 257000, 1370593),
    "mobilevitv2_075": (696, 4176, 54816, 228866, 863812, 1328643, 0, 385000, 2866009),
    "mobilevitv2_100": (928, 7104, 95616, 403458, 1528580, 2353155, 0, 513000, 4901841),
    "mobilevitv2_125": (1160, 10800, 147680, 627202, 2381764, 3668483, 0, 641000, 7478089),
    "mobilevitv2_150": (1392, 15264, 211008, 900098, 3423364, 5274627, 0, 769000, 10594753),
    "mobilevitv2_175": (1624, 20496, 285600, 1222146, 4653380, 7171587, 0, 897000, 14251833),
    "mobilevitv2_200": (1856, 26496, 371456, 1593346, 6071812, 9359363, 0, 1025000, 18449329),
    "mobilevitv3_xxs": (464, 1472, 7696, 89392, 255536, 315328, 66560, 513000, 1249448),
    "mobilevitv3_xs": (464, 3968, 54048, 218400, 655536, 813264, 103680, 641000, 2490360),
    "mobilevitv3_s": (464, 3968, 86528, 461568, 1609088, 2332176, 309120, 961000, 5763912),
    "mobilevitv3_xxs_l2": (464, 1472, 7696, 89392, 151376, 315328, 66560, 513000, 1145288),
    "mobilevitv3_xs_l2": (464, 3968, 54048, 218400, 422496, 813264, 103680, 641000, 2257320),
    "mobilevitv3_s_l2": (464, 3968, 86528, 461568, 1015040, 2332176, 309120, 961000, 5169864),
    "mobilevitv3_050": (464, 2016, 25280, 111618, 405892, 627715, 0, 257000, 1429985),
    "mobilevitv3_075": (696, 4176, 54816, 247298, 905284, 1402371, 0, 385000, 2999641),
    "mobilevitv3_100": (928, 7104, 95616, 436226, 1602308, 2484227, 0, 513000, 5139409),
}

FVCORE_MACS = {
    "mobilevit_xxs": 0.4182e9,
    "mobilevit_xs": 1.0522e9,
    "mobilevit_s": 2.0334e9,
    "mobilevitv2_050": 0.4805e9,
    "mobilevitv2_075": 1.0518e9,
    "mobilevitv2_100": 1.8438e9,
    "mobilevitv2_125": 2.8566e9,
    "mobilevitv2_150": 4.0901e9,
    "mobilevitv2_175": 5.5443e9,
    "mobilevitv2_200": 7.2193e9,
    "mobilevitv3_xxs": 343.3e6,
    "mobilevitv3_xs": 993.9e6,
    "mobilevitv3_s": 1866.6e6,
    "mobilevitv3_xxs_l2": 311.5e6,
    "mobilevitv3_xs_l2": 926.5e6,
    "mobilevitv3_s_l2": 1702.1e6,
    "mobilevitv3_050": 495.7e6,
    "mobilevitv3_075": 1086.0e6,
    "mobilevitv3_100": 1904.7e6,
}

# Section 4.2: the attention matmuls that fvcore misses under fused attention (v1 XXS/XS/S).
ATTENTION_MACS = {"mobilevit_xxs": 78.2e6, "mobilevit_xs": 117.3e6, "mobilevit_s": 177.6e6}

# Section 4.2 (v3 table) and 3.6: fvcore totals at 224x224.
FVCORE_MACS_224 = {"mobilevit_xxs": 309.9e6, "mobilevit_xs": 792.6e6, "mobilevit_s": 1546.7e6,
                   "mobilevitv3_xxs": 252.6e6, "mobilevitv3_xs": 748.1e6,
                   "mobilevitv3_s": 1419.1e6, "mobilevitv3_050": 386.4e6,
                   "mobilevitv3_075": 846.8e6, "mobilevitv3_100": 1485.3e6}
