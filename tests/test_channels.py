"""Channel roles from labels: MARSH, CinC, MESA, SHHS, PhysioNet and free-text conventions."""

from __future__ import annotations

import json

import pytest

from resp_sep.channels import detect_roles, normalise_label, parse_overrides, role_of
from resp_sep.errors import EXIT_INPUT, EXIT_USAGE, InputError


def roles(labels, overrides=None) -> dict[str, str]:
    return {r: c.label for r, c in detect_roles(labels, overrides).items()}


def test_marsh():
    assert roles(["ECG", "Pleth", "Nasal Therm", "Thorax IP"]) == {
        "ecg": "ECG", "ppg": "Pleth", "nasal": "Nasal Therm", "thor": "Thorax IP"}


def test_cinc_lead_ii_preferred():
    for labels in (["II", "V", "PLETH", "RESP"], ["V", "II", "PLETH", "RESP"]):
        got = detect_roles(labels)
        assert {r: c.label for r, c in got.items()} == {"ecg": "II", "ppg": "PLETH", "thor": "RESP"}
        assert got["ecg"].alternatives == ["V"] and not got["ecg"].ambiguous
        assert "preferred over V" in got["ecg"].note and "--channel ecg=" in got["ecg"].note


def test_mesa():
    labels = ["EKG", "EOG-L", "EEG3", "Pleth", "Flow", "Aux_AC", "Thor", "Abdo", "SpO2", "HR",
              "EKG_Off", "OxStatus", "Snore", "Pos", "Light", "DHR"]
    got = detect_roles(labels)
    assert {r: c.label for r, c in got.items()} == {
        "ecg": "EKG", "ppg": "Pleth", "nasal": "Flow", "thor": "Thor", "abdo": "Abdo"}
    assert got["nasal"].alternatives == ["Aux_AC"] and not got["nasal"].ambiguous
    # the nasal pressure channel, when present, wins over the thermistor flow
    assert roles(labels + ["Pres"])["nasal"] == "Pres"


@pytest.mark.parametrize("label", ["SpO2", "HR", "EKG_Off", "OxStatus", "Snore", "Pos", "SaO2", "H.R.",
                                   "POSITION", "Pulse", "DHR", "Heart Rate", "EEG C3-A2", "EMG", "Light",
                                   "Leg L", "Body Temp", "OX stat"])
def test_distractors_have_no_role(label):
    assert role_of(label) is None
    # and they never steal a role from the real channel
    assert roles(["ECG", label]) == {"ecg": "ECG"}


def test_shhs():
    labels = ["SaO2", "H.R.", "EEG(sec)", "ECG", "EMG", "EOG(L)", "EOG(R)", "EEG", "THOR RES", "ABDO RES",
              "POSITION", "LIGHT", "NEW AIR", "OX stat", "AIRFLOW"]
    got = detect_roles(labels)
    assert {r: got[r].label for r in ("ecg", "thor", "abdo")} == {
        "ecg": "ECG", "thor": "THOR RES", "abdo": "ABDO RES"}
    assert "ppg" not in got
    # two airflow channels at the same rank: one is chosen, the other is reported
    assert {got["nasal"].label, *got["nasal"].alternatives} == {"NEW AIR", "AIRFLOW"}
    assert got["nasal"].ambiguous and "ambiguous" in got["nasal"].note


def test_physionet():
    labels = ["II", "V", "MLII", "ECG II", "PLETH", "RESP", "Resp C", "Resp A", "Resp N"]
    got = detect_roles(labels)
    assert {r: c.label for r, c in got.items()} == {
        "ecg": "II", "ppg": "PLETH", "nasal": "Resp N", "thor": "RESP", "abdo": "Resp A"}
    assert set(got["ecg"].alternatives) == {"V", "MLII", "ECG II"}
    assert got["ecg"].alternatives[-1] == "V"  # the precordial lead ranks after the lead-II spellings
    assert "Resp C" in got["thor"].alternatives
    for lab in ("MLII", "ECG II"):
        assert role_of(lab) == ("ecg", 0)
    assert roles(["V5", "MLII"]) == {"ecg": "MLII"}  # MIT-BIH


def test_free_text():
    assert role_of("Nasal Pressure")[0] == "nasal"
    assert role_of("Nasal Therm")[0] == "nasal"
    for lab in ("Thorax", "Chest", "Resp Belt Thorax", "Thorax IP"):
        assert role_of(lab)[0] == "thor", lab
    assert role_of("Abdomen")[0] == "abdo"
    # research ECG sets with one respiration belt
    assert roles(["ECG Lead II", "Respiration belt"]) == {"ecg": "ECG Lead II", "thor": "Respiration belt"}
    assert roles(["ECG", "RIP", "Abdomen"]) == {"ecg": "ECG", "thor": "RIP", "abdo": "Abdomen"}
    got = detect_roles(["Nasal Pressure", "Thorax", "Chest", "Resp Belt Thorax", "Nasal Therm", "Thorax IP",
                        "Abdomen"])
    assert {r: c.label for r, c in got.items()} == {"nasal": "Nasal Pressure", "thor": "Thorax", "abdo": "Abdomen"}
    assert got["nasal"].alternatives == ["Nasal Therm"] and not got["nasal"].ambiguous
    assert got["thor"].ambiguous and set(got["thor"].alternatives) == {"Chest", "Resp Belt Thorax", "Thorax IP"}


def test_keyword_patterns():
    assert role_of("ECG LL-RA") == ("ecg", 6)
    assert role_of("Chest wall effort (RIP)")[0] == "thor"
    assert detect_roles(["ECG LL-RA"])["ecg"].source == "pattern"
    assert detect_roles(["ECG"])["ecg"].source == "alias"
    # a canonical name wins over a free-text keyword match whatever the file order
    assert roles(["Oral Therm", "ECG LL-RA", "Flow", "EKG"]) == {"ecg": "EKG", "nasal": "Flow"}


@pytest.mark.parametrize("label, role", [
    ("ecg", "ecg"), ("E.C.G.", "ecg"), ("  Ecg  ", "ecg"), ("ecg-ii", "ecg"), ("Ecg_II", "ecg"),
    ("pleth", "ppg"), ("PLETH", "ppg"), ("SpO2 Pleth", "ppg"), ("thor_res", "thor"), ("Thor-Res", "thor"),
    ("RESP BELT THORAX", "thor"), ("resp.belt.thorax", "thor"), ("abdo res", "abdo"), ("ABD", "abdo"),
    ("nasal_pressure", "nasal"), ("NASAL-PRESSURE", "nasal"), ("new air", "nasal"),
])
def test_case_and_punctuation(label, role):
    assert role_of(label)[0] == role


def test_normalise_label():
    assert normalise_label("Resp Belt-Thorax") == "respbeltthorax"
    assert normalise_label(" E.C.G. (II) ") == "ecgii"
    assert normalise_label("") == ""


def test_ambiguity_two_ecgs():
    for labels in (["ECG1", "ECG2"], ["ECG 1", "ECG 2"], ["EKG1", "EKG2"]):
        got = detect_roles(labels)["ecg"]
        assert got.label == labels[0] and got.alternatives == [labels[1]]
        assert got.ambiguous and "ambiguous" in got.note and "--channel ecg=LABEL" in got.note


def test_no_alternatives_no_note():
    got = detect_roles(["ECG", "Pleth"])
    assert got["ecg"].note == "" and got["ecg"].alternatives == [] and not got["ecg"].ambiguous


# -------------------------------------------------------------------------------------- overrides


def test_overrides():
    got = detect_roles(["ECG1", "ECG2", "Thorax"], {"ecg": "ECG2"})
    assert got["ecg"].label == "ECG2" and got["ecg"].source == "user" and got["ecg"].note == ""
    assert got["thor"].label == "Thorax"
    # matched after normalisation
    assert detect_roles(["ECG1", "ECG 2"], {"ecg": "ecg2"})["ecg"].label == "ECG 2"
    # a label without any known role can be forced
    assert detect_roles(["Ch 7", "ECG"], {"ppg": "ch7"})["ppg"].label == "Ch 7"
    # a channel serves at most one role: forcing Abdomen as thor leaves no abdo channel
    got = detect_roles(["Thorax", "Abdomen"], {"thor": "Abdomen"})
    assert got["thor"].label == "Abdomen" and "abdo" not in got


def test_override_missing_label():
    with pytest.raises(InputError, match="NOPE") as ei:
        detect_roles(["ECG", "Pleth"], {"ecg": "NOPE"}, path="rec.edf")
    assert ei.value.exit_code == EXIT_INPUT
    assert str(ei.value).startswith("rec.edf: ") and "ECG, Pleth" in str(ei.value)


def test_parse_overrides():
    assert parse_overrides(None) == {}
    assert parse_overrides(["ecg=EKG", "THOR = Chest belt", "nasal=a=b"]) == {
        "ecg": "EKG", "thor": "Chest belt", "nasal": "a=b"}
    for bad in ("ecg", "ecg=", "=EKG", "lung=Chest"):
        with pytest.raises(InputError) as ei:
            parse_overrides([bad])
        assert ei.value.exit_code == EXIT_USAGE


# ------------------------------------------------------------------------------------ CLI --json


def test_info_json_marsh(shared_data, run_cli):
    code, out, err = run_cli(["info", "--json", shared_data / "marsh-edf" / "marsh-0005.edf"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["failed"] == []
    (item,) = doc["recordings"]
    assert item["roles"] == {"ecg": "ECG", "ppg": "Pleth", "nasal": "Nasal Therm", "thor": "Thorax IP"}
    assert {c["label"]: c["role"] for c in item["channels"]} == {
        "ECG": "ecg", "Pleth": "ppg", "Nasal Therm": "nasal", "Thorax IP": "thor"}
    assert {c["label"]: c["fs_hz"] for c in item["channels"]} == {
        "ECG": 250, "Pleth": 500, "Nasal Therm": 1000, "Thorax IP": 250}
    assert item["format"] == "edf+" and item["n_annotations"] > 300


def test_info_json_cinc(shared_data, run_cli):
    code, out, err = run_cli(["info", "--json", shared_data / "cinc2015-wfdb" / "v100s.hea"])
    assert code == 0, err
    (item,) = json.loads(out)["recordings"]
    assert item["roles"] == {"ecg": "II", "ppg": "PLETH", "thor": "RESP"}
    assert [c["role"] for c in item["channels"]] == ["ecg", None, "ppg", "thor"]
    assert "V" in item["notes"]["ecg"]


def test_info_json_override(shared_data, run_cli):
    code, out, err = run_cli(["info", "--json", "-c", "ecg=V", shared_data / "cinc2015-wfdb" / "v100s.hea"])
    assert code == 0, err
    (item,) = json.loads(out)["recordings"]
    assert item["roles"]["ecg"] == "V" and "ecg" not in item["notes"]


def test_info_table_marsh(shared_data, run_cli):
    code, out, err = run_cli(["info", shared_data / "marsh-edf" / "marsh-0018.edf"])
    assert code == 0 and err == ""
    for word in ("ECG", "Pleth", "Nasal Therm", "Thorax IP", "ppg", "nasal", "thor", "annotations"):
        assert word in out
