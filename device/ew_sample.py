# How a sample becomes bytes: the JSON object of contract §2, built without floats for
# the time (ESP ports have single-precision floats: a Unix time as a float
# would round to 128-second steps).

import json


def encode(seq, boot, ts_ms, metrics):
    """Bytes of one sample object; `ts_ms` is None until the clock is set."""
    if ts_ms is None:
        head = '{"seq":%d,"boot":%d,"m":' % (seq, boot)
    else:
        head = '{"seq":%d,"boot":%d,"ts":%d.%03d,"m":' % (seq, boot, ts_ms // 1000, ts_ms % 1000)
    return (head + json.dumps(metrics, separators=(",", ":")) + "}").encode()


def message(samples, lo):
    """One MQTT payload: a sample, or a JSON array of them (a backlog).

    The first sample carries `lo`, the lowest seq this board still holds,
    so the edge can tell a sample the board dropped from one still coming.
    """
    first = ('{"lo":%d,' % lo).encode() + samples[0][1:]
    if len(samples) == 1:
        return first
    return b"[" + first + b"," + b",".join(samples[1:]) + b"]"
