"""One CLI (issue #25): a walk over every parser and option of ``robench`` holds the rules every command
keeps, so a new command or option that breaks one fails here."""

from __future__ import annotations

import argparse

import pytest

from robench.cli import GLOBAL_OPTIONS, build_parser, main, parse

#: The least each command needs to parse.
MINIMAL = {
    "eval": ["eval", "--model", "m", "--threat", "clean"],
    "train": ["train", "--recipe", "r", "--arch", "a", "--name", "n", "--out", "o"],
    "leaderboard": ["leaderboard"],
    "verify": ["verify"],
    "compare": ["compare", "a", "b"],
    "submit": ["submit"],
    "corruptions-report": ["corruptions-report", "--model", "m"],
    "ls": ["ls", "models"],
    "show": ["show", "threat", "clean"],
}
#: Commands that print results, so each must offer --json (a new command must be classified here).
PRINTS_RESULTS = {"eval", "verify", "compare", "ls", "show", "submit", "corruptions-report", "leaderboard"}
QUIET = {"train"}  # prints the path of the card it wrote


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    return [("robench", build_parser()), *_commands().items()]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in parser._actions for flag in a.option_strings}


def test_every_command_is_classified_and_has_a_minimal_command_line():
    assert set(_commands()) == PRINTS_RESULTS | QUIET == set(MINIMAL)


@pytest.mark.parametrize("name, parser", _parsers())
def test_every_option_and_argument_has_help(name, parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            missing = [c.dest for c in action._choices_actions if not c.help]
        else:
            missing = [] if action.help and action.help is not argparse.SUPPRESS else [action.dest]
        assert not missing, (name, action.option_strings or action.dest)


@pytest.mark.parametrize("name, parser", _parsers())
def test_no_help_shows_a_doubled_percent(name, parser):
    """argparse %-formats help strings but prints descriptions as written: "95%%" belongs in help only."""
    assert "%%" not in parser.format_help(), name


@pytest.mark.parametrize("name", sorted(PRINTS_RESULTS))
def test_every_command_that_prints_results_has_json(name):
    assert "--json" in _options(_commands()[name])
    assert parse([*MINIMAL[name], "--json"]).json is True


def test_threat_is_repeatable_and_comma_separated_everywhere():
    having = {name for name, p in _commands().items() if "--threat" in _options(p)}
    assert having == {"eval", "verify", "compare", "corruptions-report"}
    for name in having:
        argv = [a for a in MINIMAL[name] if a not in ("--threat", "clean")]
        args = parse([*argv, "--threat", "a,b", "--threat", "c", "--threat", "a"])
        assert args.threats == ["a", "b", "c"], name  # each once, in order


def test_version(capsys):
    from robench import __version__

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"robench {__version__}"


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_global_options_parse_after_the_subcommand(name):
    assert set(GLOBAL_OPTIONS) <= set(_options(_commands()[name]))
    args = parse(["--config-dir", "A", *MINIMAL[name], "--config-dir", "B", "--code-dir", "C", "--debug"])
    assert (args.config_dir, args.code_dir, args.debug) == (["A", "B"], ["C"], True)
    plain = parse(MINIMAL[name])
    assert (plain.config_dir, plain.code_dir, plain.debug) == ([], [], False)
    assert not any(key.startswith("late_") for key in vars(args))


def test_ls_without_an_argument_names_the_choices(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["ls"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "required: {models,threats,datasets,boards}" in err, err
    assert "what" not in err


def test_old_records_folder_spelling_warns_once_and_still_works(capsys):
    args = parse(["eval", "--model", "m", "--threat", "clean", "--out", "x", "--out", "y"])
    assert args.runs == "y"
    assert capsys.readouterr().err == "robench: warning: --out is deprecated; use --runs\n"
    assert parse(["eval", "--model", "m", "--threat", "clean", "--runs", "z"]).runs == "z"
    assert capsys.readouterr().err == ""
