"""A real SoftHSM token for the tests, with key pairs made through PKCS#11 itself."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4711"
TOKEN = "zoll-test"


@dataclass(frozen=True)
class Token:
    module: str
    label: str
    pin: str

    def uri(self, obj: str, *, with_pin: bool = True) -> str:
        query = f"?module-path={self.module}" + (f"&pin-value={self.pin}" if with_pin else "")
        return f"pkcs11:token={self.label};object={obj};type=private{query}"


def make_token(folder: Path) -> Token:
    """Initialise a token and put an ECDSA P-256 ('ec') and an Ed25519 ('ed') key in it.

    SoftHSM reads SOFTHSM2_CONF when the library is first loaded, so this must run before
    anything else in the process opens the module.
    """
    (folder / "tokens").mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            "0815",
        ],
        check=True,
        capture_output=True,
    )
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=TOKEN).open(rw=True, user_pin=PIN) as session:
        ec = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        ec.generate_keypair(store=True, label="ec", id=b"\x01")
        ed = session.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
            local=True,
        )
        ed.generate_keypair(
            store=True, label="ed", id=b"\x02", mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN
        )
    return Token(MODULE, TOKEN, PIN)
