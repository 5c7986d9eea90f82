#!/usr/bin/python3
"""Golden vectors for the secret connection (sockets/secret.h).

An implementation of the handshake and framing written from the header's
text alone, on PyNaCl (X25519, Ed25519, ChaCha20-Poly1305-IETF) and
cryptography's HKDF: nothing from sockets/secret.c. From fixed seeds it
writes tests/unit/data/secret_vectors.json, which test_secret.c checks byte
for byte.

    /usr/bin/python3 tests/unit/gen_secret_vectors.py   # needs python3-nacl, python3-cryptography
"""
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl import bindings as nb

MAGIC = b"WBS1"
SALT = b"waybill secret connection v1"
INFO = b"keys and challenge"


def hkdf(ikm, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=INFO).derive(ikm)


def seal(key, counter, plain):
    """One frame: 4-byte big-endian length, then ciphertext || tag with the
    length bytes as additional data and nonce 0^4 || counter (LE64)."""
    assert 1 <= len(plain) <= 65536
    header = struct.pack(">I", len(plain))
    nonce = b"\0" * 4 + struct.pack("<Q", counter)
    return header + nb.crypto_aead_chacha20poly1305_ietf_encrypt(plain, header, nonce, key)


def side(id_seed, eph_sk):
    id_pk, id_sk = nb.crypto_sign_seed_keypair(id_seed)
    eph_pk = nb.crypto_scalarmult_base(eph_sk)
    return {
        "id_seed": id_seed,
        "id_pk": id_pk,
        "id_sk": id_sk,
        "eph_sk": eph_sk,
        "eph_pk": eph_pk,
        "hello": MAGIC + eph_pk,
    }


def case(name, a_id, a_eph, b_id, b_eph, data):
    a, b = side(a_id, a_eph), side(b_id, b_eph)
    dh = nb.crypto_scalarmult(a["eph_sk"], b["eph_pk"])
    assert dh == nb.crypto_scalarmult(b["eph_sk"], a["eph_pk"])
    lo, hi = sorted([a["eph_pk"], b["eph_pk"]])
    okm = hkdf(lo + hi + dh, 96)
    challenge = okm[64:96]
    for s in (a, b):
        s_lo = s["eph_pk"] == lo
        s["send_key"] = okm[0:32] if s_lo else okm[32:64]
        s["recv_key"] = okm[32:64] if s_lo else okm[0:32]
        s["challenge"] = challenge
        sig = nb.crypto_sign(challenge, s["id_sk"])[:64]
        s["auth_plain"] = s["id_pk"] + sig
        s["auth_wire"] = seal(s["send_key"], 0, s["auth_plain"])
        assert len(s["auth_wire"]) == 96 + 20
    frames = []
    ctr = {"a": 1, "b": 1}
    for sender, plain in data:
        s = a if sender == "a" else b
        frames.append(
            {
                "from": sender,
                "counter": ctr[sender],
                "plain": plain.hex(),
                "wire": seal(s["send_key"], ctr[sender], plain).hex(),
            }
        )
        ctr[sender] += 1
    keys = ("id_seed", "id_pk", "id_sk", "eph_sk", "eph_pk", "hello", "send_key", "recv_key",
            "challenge", "auth_plain", "auth_wire")
    return {
        "name": name,
        "lo": "a" if a["eph_pk"] == lo else "b",
        "dh": dh.hex(),
        "okm": okm.hex(),
        "a": {k: a[k].hex() for k in keys},
        "b": {k: b[k].hex() for k in keys},
        "frames": frames,
    }


def main():
    cases = [
        case("constant seeds", bytes([1]) * 32, bytes([3]) * 32, bytes([2]) * 32,
             bytes([4]) * 32,
             [("a", b"hello from a"), ("a", bytes(range(256)) * 2), ("b", b"\x00")]),
        # The same ephemeral keys the other way round: the other side is lo.
        case("sides swapped", bytes([2]) * 32, bytes([4]) * 32, bytes([1]) * 32,
             bytes([3]) * 32,
             [("b", b"x" * 1000), ("a", b"reply"), ("b", b"y")]),
        case("counting seeds", bytes(range(1, 33)), bytes(range(0x40, 0x60)),
             bytes(range(2, 34)), bytes(range(0x80, 0xa0)),
             [("a", bytes((i * 7) & 0xFF for i in range(5000))), ("b", b"last frame")]),
    ]
    assert {c["lo"] for c in cases} == {"a", "b"}
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "data", "secret_vectors.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"source": "tests/unit/gen_secret_vectors.py", "cases": cases}, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
