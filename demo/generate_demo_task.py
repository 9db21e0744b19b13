"""Generate the small NER task the README demo distils on (deterministic; stdlib only).

    python demo/generate_demo_task.py demo/ner

Sentences come from templates filled with people, places and organisations; the same entity
can appear in several roles, and dev/test use names and templates never seen in train, so the
task needs more than memorising a list.
"""
import random
import sys
from pathlib import Path

PEOPLE = ("Alice Johnson|Bob Smith|Carlos Diaz|Dana Lee|Erik Larsen|Fatima Khan|George Brown|Hana Sato|"
          "Ivan Petrov|Julia Rossi|Kofi Mensah|Laura Chen|Mario Silva|Nina Novak|Omar Haddad|Priya Patel|"
          "Quentin Blake|Rosa Martinez|Sven Olsen|Tara Singh|Umar Farooq|Vera Ivanova|Walter White|"
          "Xavier Dupont|Yuki Tanaka|Zara Ahmed|Anna Berg|Ben Carter|Chloe Martin|David Kim|Elena Costa|"
          "Felix Wagner|Grace Hopper|Hugo Moreau|Isla Murray|Jonas Weber|Kira Volkova|Leo Fischer").split("|")
PLACES = ("Paris|London|Berlin|Madrid|Rome|Tokyo|Nairobi|Lagos|Toronto|Chicago|Sydney|Mumbai|Cairo|Lima|"
          "Oslo|Vienna|Prague|Dublin|Lisbon|Seoul|Boston|Denver|Austin|Geneva|Munich|Milan|Kyoto|Accra|"
          "Quito|Hanoi|Warsaw|Athens|Brussels|Helsinki|Montreal|Santiago").split("|")
ORGS = ("Acme Corp|Globex|Initech|Umbrella Group|Stark Industries|Wayne Enterprises|Hooli|Vandelay Imports|"
        "Soylent Inc|Cyberdyne Systems|Tyrell Corporation|Wonka Industries|Aperture Labs|Oscorp|"
        "Pied Piper|Massive Dynamic|Gringotts Bank|Nakatomi Trading|Blue Sun|Monarch Solutions|"
        "Northwind Traders|Contoso|Fabrikam|Tailspin Toys|Litware|Adventure Works|Proseware|Wingtip Toys").split("|")
TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{PER} moved from {LOC} to {LOC} last year .",
    "{ORG} opened a new office in {LOC} .",
    "{PER} and {PER} met at the {ORG} headquarters in {LOC} .",
    "According to {PER} , {ORG} will hire two hundred people .",
    "The mayor of {LOC} praised {ORG} for its support .",
    "{PER} was born in {LOC} and studied economics .",
    "{ORG} announced that {PER} will lead the team in {LOC} .",
    "Shares of {ORG} rose after {PER} spoke in {LOC} .",
    "{PER} left {ORG} to start a company in {LOC} .",
    "Flights from {LOC} to {LOC} were cancelled on Monday .",
    "{PER} visited {LOC} with colleagues from {ORG} .",
    "In {LOC} , {ORG} signed a deal with {ORG} .",
    "{PER} told reporters that {ORG} is doing well .",
    "A spokesperson for {ORG} in {LOC} declined to comment .",
    "{PER} thanked {PER} for the invitation to {LOC} .",
]
HELD_OUT_TEMPLATES = [
    "Last week {PER} flew to {LOC} to meet investors from {ORG} .",
    "{ORG} and {ORG} both expanded in {LOC} this spring .",
    "Reporters in {LOC} asked {PER} about the future of {ORG} .",
    "{PER} , a manager at {ORG} , lives near {LOC} .",
]
TAG = {"PER": "PER", "LOC": "LOC", "ORG": "ORG"}


def fill(template: str, rng: random.Random, people, places, orgs) -> tuple[list[str], list[str]]:
    tokens, tags = [], []
    pools = {"PER": people, "LOC": places, "ORG": orgs}
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            kind = piece[1:-1]
            words = rng.choice(pools[kind]).split()
            tokens += words
            tags += [f"B-{TAG[kind]}"] + [f"I-{TAG[kind]}"] * (len(words) - 1)
        else:
            tokens.append(piece)
            tags.append("O")
    return tokens, tags


def split_pool(pool, rng):
    pool = list(pool)
    rng.shuffle(pool)
    cut = int(len(pool) * 0.7)
    return pool[:cut], pool[cut:]


def main(out_dir: str) -> None:
    rng = random.Random(13)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (train_people, new_people), (train_places, new_places), (train_orgs, new_orgs) = (
        split_pool(PEOPLE, rng), split_pool(PLACES, rng), split_pool(ORGS, rng))

    def sentences(n, templates, people, places, orgs):
        return [fill(rng.choice(templates), rng, people, places, orgs) for _ in range(n)]

    splits = {
        "train": sentences(300, TEMPLATES, train_people, train_places, train_orgs),
        "dev": sentences(100, TEMPLATES + HELD_OUT_TEMPLATES, PEOPLE, PLACES, ORGS),
        "test": sentences(150, HELD_OUT_TEMPLATES + TEMPLATES, new_people, new_places, new_orgs),
    }
    for name, rows in splits.items():
        lines = [" ".join(tokens) + "\t" + " ".join(tags) for tokens, tags in rows]
        (out / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    transfer = sentences(1000, TEMPLATES + HELD_OUT_TEMPLATES, PEOPLE, PLACES, ORGS)
    (out / "transfer.txt").write_text("\n".join(" ".join(t) for t, _ in transfer) + "\n", encoding="utf-8")
    labels = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    (out / "labels.tsv").write_text("\n".join(labels) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo/ner")
