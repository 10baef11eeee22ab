"""Write the demo data set: simulated Higgs-to-four-lepton candidates as ROOT files with a TTree, reproducibly.

Runs with the ROOT environment's Python (.venvs/kernel-root: numpy and the official ROOT build), called by the Rucio
seed (devstack.rucio_seed), which runs elsewhere. The same arguments give the same bytes: the events come from a
seeded generator and ROOT writes the files with its `reproducible` option (no creation dates, no random UUIDs).

Each event is a four-lepton candidate, H -> ZZ* -> 4l (about a third, m4l near 125 GeV), ZZ -> 4l continuum, or
Z -> 4l (m4l near 91 GeV): two lepton pairs from the decay of two Z bosons in the four-lepton rest frame, boosted to
the lab. Tree `events`, one entry per candidate:

    run, event                      run and event number
    channel                         0: 4mu, 1: 4e, 2: 2e2mu
    process                         generator truth: 0 H -> ZZ* -> 4l, 1 ZZ -> 4l, 2 Z -> 4l
    m4l, mZ1, mZ2                   four-lepton mass, the pair masses (Z1 from the first pair) [GeV]
    lep_pt, lep_eta, lep_phi, lep_e leptons ordered by decreasing pT [GeV]
    lep_charge, lep_pdgid           charge, PDG id (11 e-, -11 e+, 13 mu-, -13 mu+)

    python -m devstack.higgs_sample OUT_DIR [--files 3] [--events 40000] [--seed 125]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MZ = 91.1876
TREE = "events"
CHANNELS = ("4mu", "4e", "2e2mu")
PROCESSES = ("H->ZZ*->4l", "ZZ->4l", "Z->4l")


def file_name(index: int) -> str:
    return f"higgs-candidates.{index:02d}.root"


def _two_body(rng, mass, m1, m2):
    """Momenta of two daughters (masses m1, m2) of a parent at rest, isotropic: (p1, p2) as (n, 4) arrays E, px..."""
    import numpy as np

    n = len(mass)
    p = np.sqrt(np.clip((mass**2 - (m1 + m2) ** 2) * (mass**2 - (m1 - m2) ** 2), 0, None)) / (2 * mass)
    cos_t = rng.uniform(-1, 1, n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(0, 2 * np.pi, n)
    direction = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1) * p[:, None]
    first = np.concatenate([np.sqrt(p**2 + m1**2)[:, None], direction], axis=1)
    second = np.concatenate([np.sqrt(p**2 + m2**2)[:, None], -direction], axis=1)
    return first, second


def _boost(p4, frame):
    """Boost four-momenta `p4` (n, 4) from the rest frame of `frame` (n, 4) to the frame `frame` is given in."""
    import numpy as np

    beta = frame[:, 1:] / frame[:, :1]
    b2 = np.sum(beta**2, axis=1)
    gamma = 1 / np.sqrt(1 - b2)
    bp = np.sum(beta * p4[:, 1:], axis=1)
    coef = np.where(b2 > 0, (gamma - 1) / np.where(b2 > 0, b2, 1), 0.0)
    energy = gamma * (p4[:, 0] + bp)
    momentum = p4[:, 1:] + (coef * bp + gamma * p4[:, 0])[:, None] * beta
    return np.concatenate([energy[:, None], momentum], axis=1)


def generate(rng, n: int) -> dict:
    """`n` four-lepton candidates as numpy arrays (the tree's branches)."""
    import numpy as np

    process = rng.choice(3, size=n, p=[0.35, 0.55, 0.10])
    m4l = np.empty(n)
    signal, zz, z = process == 0, process == 1, process == 2
    m4l[signal] = rng.normal(125.0, 1.8, signal.sum())
    on_shell = rng.uniform(size=zz.sum()) < 0.7
    m4l[zz] = np.where(on_shell, 182.0 + rng.exponential(55.0, zz.sum()), rng.uniform(100.0, 182.0, zz.sum()))
    m4l[z] = rng.normal(MZ, 2.0, z.sum())
    # The pair masses: Z1 on shell where the four-lepton mass allows it, Z2 what is left (at least 12 GeV, 4 for Z->4l)
    low = np.where(z, 4.0, 12.0)
    mz1 = np.where(z, rng.uniform(40.0, 80.0, n), np.clip(rng.normal(MZ, 2.5, n), 60.0, 120.0))
    mz1 = np.minimum(mz1, m4l - low - 1.0)
    share = np.where(zz & (m4l > 182.0), 1.0, rng.beta(2.0, 1.2, n))
    mz2 = np.where(zz & (m4l > 182.0), np.clip(rng.normal(MZ, 2.5, n), low, m4l - mz1 - 0.5), 0.0)
    mz2 = np.where(mz2 > 0, mz2, low + (m4l - mz1 - low - 0.5) * share)
    # Z1 and Z2 back to back in the four-lepton frame, each decaying into two massless leptons
    z1, z2 = _two_body(rng, m4l, mz1, mz2)
    leptons = []
    for pair, mass in ((z1, mz1), (z2, mz2)):
        a, b = _two_body(rng, mass, np.zeros(n), np.zeros(n))
        leptons += [_boost(a, pair), _boost(b, pair)]
    # the four-lepton system in the lab: some transverse momentum, central rapidity
    pt_sys, phi_sys, y_sys = rng.exponential(15.0, n), rng.uniform(0, 2 * np.pi, n), rng.normal(0.0, 0.8, n)
    mt = np.sqrt(m4l**2 + pt_sys**2)
    system = np.stack([mt * np.cosh(y_sys), pt_sys * np.cos(phi_sys), pt_sys * np.sin(phi_sys), mt * np.sinh(y_sys)], 1)
    lab = np.stack([_boost(lep, system) for lep in leptons], axis=1)  # (n, 4 leptons, 4)
    flavour1 = np.where(rng.uniform(size=n) < 0.5, 11, 13)
    flavour2 = np.where(rng.uniform(size=n) < 0.5, 11, 13)
    pdgid = np.stack([flavour1, -flavour1, flavour2, -flavour2], axis=1)
    channel = np.where((flavour1 == 13) & (flavour2 == 13), 0, np.where((flavour1 == 11) & (flavour2 == 11), 1, 2))
    px, py, pz, energy = lab[..., 1], lab[..., 2], lab[..., 3], lab[..., 0]
    pt = np.hypot(px, py)
    order = np.argsort(-pt, axis=1)

    def by_pt(values):
        return np.take_along_axis(values, order, axis=1)

    return {
        "channel": channel.astype(np.int32),
        "process": process.astype(np.int32),
        "m4l": m4l.astype(np.float32),
        "mZ1": mz1.astype(np.float32),
        "mZ2": mz2.astype(np.float32),
        "lep_pt": by_pt(pt).astype(np.float32),
        "lep_eta": by_pt(np.arcsinh(pz / pt)).astype(np.float32),
        "lep_phi": by_pt(np.arctan2(py, px)).astype(np.float32),
        "lep_e": by_pt(energy).astype(np.float32),
        "lep_charge": by_pt(-np.sign(pdgid)).astype(np.int32),
        "lep_pdgid": by_pt(pdgid).astype(np.int32),
    }


_FILL = """
#include "TTree.h"
void dlaas_fill_higgs_events(TTree *t, Long64_t n, ULong64_t first_event, const Int_t *channel, const Int_t *process,
                             const Float_t *m4l, const Float_t *mz1, const Float_t *mz2, const Float_t *pt,
                             const Float_t *eta, const Float_t *phi, const Float_t *e, const Int_t *charge,
                             const Int_t *pdgid) {
   UInt_t b_run = 1; ULong64_t b_event; Int_t b_channel, b_process; Float_t b_m4l, b_mz1, b_mz2;
   Float_t b_pt[4], b_eta[4], b_phi[4], b_e[4]; Int_t b_charge[4], b_pdgid[4];
   t->Branch("run", &b_run, "run/i"); t->Branch("event", &b_event, "event/l");
   t->Branch("channel", &b_channel, "channel/I"); t->Branch("process", &b_process, "process/I");
   t->Branch("m4l", &b_m4l, "m4l/F"); t->Branch("mZ1", &b_mz1, "mZ1/F"); t->Branch("mZ2", &b_mz2, "mZ2/F");
   t->Branch("lep_pt", b_pt, "lep_pt[4]/F"); t->Branch("lep_eta", b_eta, "lep_eta[4]/F");
   t->Branch("lep_phi", b_phi, "lep_phi[4]/F"); t->Branch("lep_e", b_e, "lep_e[4]/F");
   t->Branch("lep_charge", b_charge, "lep_charge[4]/I"); t->Branch("lep_pdgid", b_pdgid, "lep_pdgid[4]/I");
   for (Long64_t i = 0; i < n; ++i) {
      b_event = first_event + i; b_channel = channel[i]; b_process = process[i];
      b_m4l = m4l[i]; b_mz1 = mz1[i]; b_mz2 = mz2[i];
      for (int j = 0; j < 4; ++j) {
         b_pt[j] = pt[4 * i + j]; b_eta[j] = eta[4 * i + j]; b_phi[j] = phi[4 * i + j]; b_e[j] = e[4 * i + j];
         b_charge[j] = charge[4 * i + j]; b_pdgid[j] = pdgid[4 * i + j];
      }
      t->Fill();
   }
}
"""


def write(out_dir: Path, files: int, events: int, seed: int) -> list[Path]:
    import numpy as np
    import ROOT

    ROOT.gROOT.SetBatch(True)
    if not hasattr(ROOT, "dlaas_fill_higgs_events") and not ROOT.gInterpreter.Declare(_FILL):
        raise SystemExit("higgs_sample: the ROOT fill function did not compile")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(files):
        data = generate(np.random.default_rng([seed, index]), events)
        path = out_dir / file_name(index)
        tmp = path.with_name(f".{path.name}.tmp")
        f = ROOT.TFile.Open(f"{tmp}?reproducible={path.stem}", "RECREATE")
        if not f or f.IsZombie():
            raise SystemExit(f"higgs_sample: cannot write {tmp}")
        tree = ROOT.TTree(TREE, "H->4l candidates (simulated): channel 0 4mu 1 4e 2 2e2mu; process 0 H 1 ZZ 2 Z")
        arrays = {k: np.ascontiguousarray(v) for k, v in data.items()}
        ROOT.dlaas_fill_higgs_events(
            tree,
            events,
            index * events,
            *(arrays[k] for k in ("channel", "process", "m4l", "mZ1", "mZ2")),
            *(arrays[k] for k in ("lep_pt", "lep_eta", "lep_phi", "lep_e", "lep_charge", "lep_pdgid")),
        )
        tree.Write()
        f.Close()
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--events", type=int, default=44000, help="candidates per file")
    parser.add_argument("--seed", type=int, default=125)
    args = parser.parse_args(argv)
    for path in write(args.out_dir, args.files, args.events, args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
