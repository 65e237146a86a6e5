"""Item metadata readers, on fixtures and on the real MovieLens-1M movies.dat."""

from pathlib import Path

import pytest

from hymoerec.data.errors import MalformedRowError
from hymoerec.data.metadata import load_metadata, read_movielens_100k_items, read_movielens_movies
from hymoerec.data.registry import resolve


def test_movies_dat(tmp_path: Path) -> None:
    path = tmp_path / "movies.dat"
    path.write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n\n2::Heat (1995)::Action\n")
    assert read_movielens_movies(path) == {
        "1": {"title": "Toy Story (1995)", "genres": ["Animation", "Children's", "Comedy"]},
        "2": {"title": "Heat (1995)", "genres": ["Action"]},
    }


def test_malformed_movies_dat_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "movies.dat"
    path.write_text("1::Toy Story (1995)::Animation\n2::no genres\n")
    with pytest.raises(MalformedRowError, match=r"movies.dat, line 2: expected MovieID::Title"):
        read_movielens_movies(path)
    path.write_bytes(b"1::Caf\xe9::Drama\n")  # GroupLens ships movies.dat in ISO-8859-1
    assert read_movielens_movies(path) == {"1": {"title": "Café", "genres": ["Drama"]}}


def test_u_item(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    flags = ["0"] * 19
    flags[1] = flags[16] = "1"
    path.write_bytes(
        ("7|Caf\xe9 (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n").encode("latin-1")
    )
    assert read_movielens_100k_items(path) == {
        "7": {"title": "Café (1995)", "genres": ["Action", "Thriller"]}
    }
    path.write_text("7|title|date||url|0|1\n")
    with pytest.raises(MalformedRowError, match="line 1"):
        read_movielens_100k_items(path)


def test_real_movielens_titles(shared_data: Path) -> None:
    metadata = load_metadata(resolve("ml-1m", shared_data))
    assert len(metadata) == 3883
    assert metadata["2858"] == {"title": "American Beauty (1999)", "genres": ["Comedy", "Drama"]}
    assert load_metadata(resolve("amazon-beauty", shared_data)) == {}


def test_a_broken_metadata_file_warns_and_never_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::10::5::978300760\n")
    (tmp_path / "movies.dat").write_text("10::no genres\n")
    with caplog.at_level("WARNING"):
        assert load_metadata(resolve(str(ratings))) == {}
    assert "movies.dat, line 1" in caplog.text and "ids only" in caplog.text
    (tmp_path / "movies.dat").write_bytes(b"10::Caf\xe9 (1995)::Drama\n")  # as GroupLens ships it
    assert load_metadata(resolve(str(ratings))) == {
        "10": {"title": "Café (1995)", "genres": ["Drama"]}
    }
