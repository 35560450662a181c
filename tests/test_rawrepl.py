"""The raw REPL's host side as a sans-IO core: transcripts of what a board
says, fed whole, a byte at a time and with junk around them.

The board's lines in these transcripts are what MicroPython's unix port
printed when driven by hand over a pty (see shared notes/micropython.md)."""

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.rawrepl import RawRepl
from firmware.rawrepl_core import (
    BANNER,
    BoardError,
    Entered,
    Event,
    Finished,
    NoMicroPython,
    PortError,
    RawReplCore,
    Rebooted,
    ReplError,
    State,
)

OK_TRACEBACK = (
    b'Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
    b"ZeroDivisionError: divide by zero\r\n"
)


def feed(core: RawReplCore, data: bytes, split: str) -> list[Event]:
    """Feed `data` whole or one byte at a time; the events that came."""
    pieces: Iterator[bytes] = (
        iter([data]) if split == "whole" else (data[i : i + 1] for i in range(len(data)))
    )
    events = []
    for piece in pieces:
        core.receive_data(piece)
        while (event := core.next_event()) is not None:
            events.append(event)
    return events


def ready(raw_paste: bool | None = None, max_output: int = 1 << 20) -> RawReplCore:
    """A core at the raw prompt."""
    core = RawReplCore(raw_paste=raw_paste, max_output=max_output)
    core.enter()
    core.data_to_send()
    core.receive_data(BANNER)
    assert core.next_event() == Entered()
    return core


SPLITS = pytest.mark.parametrize("split", ["whole", "bytewise"])


# -- entering -----------------------------------------------------------------


@SPLITS
@pytest.mark.parametrize(
    "board_says",
    [
        pytest.param(BANNER, id="banner"),
        pytest.param(b"\r\n>>> \r\n>>> \r\n>>> \r\n" + BANNER, id="from the friendly prompt"),
        pytest.param(
            b"ets Jul 29 2019 12:21:46\r\n\xff\xfe\x00rst:0x1 (POWERON_RESET)\r\n"
            b"Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n>>> " + BANNER,
            id="boot log and an interrupted program",
        ),
        pytest.param(b"\x04\x04>junk>" + BANNER, id="stray output markers"),
    ],
)
def test_enter_waits_for_the_banner_past_any_junk(board_says: bytes, split: str) -> None:
    core = RawReplCore()
    core.enter()
    assert core.data_to_send() == b"\r\x03\x03\r\x01"
    assert feed(core, board_says[:-1], split) == []
    assert core.state.value == "entering"
    assert feed(core, board_says[-1:], split) == [Entered()]
    assert core.state.value == "ready"
    assert core.junk_bytes == len(board_says) - len(BANNER)


@pytest.mark.parametrize("state", [State.ENTERING, State.READY, State.STDOUT, State.PASTING])
def test_enter_interrupts_from_any_state(state: State) -> None:
    # Also a command that never answered: Ctrl-C, then the raw prompt again.
    core = RawReplCore()
    core.state = state
    core.enter()
    assert core.data_to_send() == b"\r\x03\x03\r\x01"
    assert feed(core, BANNER, "whole") == [Entered()]


# -- raw-paste ----------------------------------------------------------------


@SPLITS
@pytest.mark.parametrize(
    ("window", "code"),
    [
        (128, b"print(1)"),
        (4, b"print(123456)"),  # several windows
        (4, b"abcd"),  # exactly one window
        (1, b"x=1"),
    ],
)
def test_raw_paste_sends_within_the_board_s_credit(window: int, code: bytes, split: str) -> None:
    core = ready()
    core.execute(code)
    assert core.data_to_send() == b"\x05A\x01"
    assert feed(core, b"R\x01" + window.to_bytes(2, "little"), split) == []
    sent = core.data_to_send()
    assert sent == code[:window] + (b"\x04" if len(code) <= window else b"")
    while not sent.endswith(b"\x04"):
        assert core.data_to_send() == b"", "no more than the credit"
        feed(core, b"\x01", split)
        more = core.data_to_send()
        assert 0 < len(more.removesuffix(b"\x04")) <= window
        sent += more
    assert sent == code + b"\x04"
    # The board acknowledges the end, runs the code, answers.
    events = feed(core, b"\x01\x04" + b"123456\r\n\x04\x04>", split)
    assert events == [Finished(b"123456\r\n", b"")]
    assert core.state is State.READY
    assert core.raw_paste is True


def test_the_board_s_first_grant_counts() -> None:
    # The board sends \x01 right after the window size: a second window.
    core = ready()
    core.execute(b"0123456789")
    core.data_to_send()
    core.receive_data(b"R\x01\x04\x00\x01")
    assert core.data_to_send() == b"01234567"


@SPLITS
def test_board_stops_the_paste_early_at_a_syntax_error(split: str) -> None:
    core = ready()
    code = b"x = (\n" + b"a=1\n" * 100
    core.execute(code)
    core.data_to_send()
    feed(core, b"R\x01\x80\x00", split)
    assert len(core.data_to_send()) == 128
    feed(core, b"\x04", split)  # no more, thank you
    assert core.data_to_send() == b"\x04"
    assert core.data_to_send() == b""
    traceback = b'Traceback (most recent call last):\r\n  File "<stdin>", line 2\r\nSyntaxError\r\n'
    events = feed(core, b"\x04" + traceback + b"\x04>", split)
    assert events == [Finished(b"", traceback)]


# -- plain raw mode -----------------------------------------------------------


@SPLITS
@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(b"R\x00", id="R\\x00"),
        pytest.param(BANNER, id="no raw-paste: the banner again"),
        pytest.param(b"R?" + BANNER, id="an answer not understood"),
    ],
)
def test_plain_raw_mode_when_raw_paste_is_refused(refusal: bytes, split: str) -> None:
    core = ready()
    core.chunk_size = 5
    code = b"print('plain')"
    core.execute(code)
    assert core.data_to_send() == b"\x05A\x01"
    feed(core, refusal, split)
    assert core.raw_paste is False
    chunks: list[bytes] = []
    while not (chunks and chunks[-1].endswith(b"\x04")):
        chunk = core.data_to_send()
        assert 0 < len(chunk.removesuffix(b"\x04")) <= 5
        chunks.append(chunk)
    assert b"".join(chunks) == code + b"\x04"
    assert feed(core, b"OKplain\r\n\x04\x04>", split) == [Finished(b"plain\r\n", b"")]
    # Remembered: the next command goes straight to plain raw.
    core.execute(b"1")
    assert core.data_to_send() == b"1\x04"


# -- output and resets --------------------------------------------------------


@SPLITS
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"\x04\x04>", Finished(b"", b"")),
        (b"hello\r\n\x04\x04>", Finished(b"hello\r\n", b"")),
        (b"\x04" + OK_TRACEBACK + b"\x04>", Finished(b"", OK_TRACEBACK)),
        (b"partial\x04" + OK_TRACEBACK + b"\x04>", Finished(b"partial", OK_TRACEBACK)),
        # Noise between the second \x04 and the prompt is no part of either.
        (b"out\x04err\x04\r\nnoise>", Finished(b"out", b"err")),
    ],
)
def test_output_is_split_into_stdout_and_stderr(
    answer: bytes, expected: Finished, split: str
) -> None:
    core = ready(raw_paste=False)
    core.execute(b"x")
    core.data_to_send()
    events = feed(core, b"OK" + answer + b"trailing junk\x04>", split)
    assert events == [expected]
    assert core.state is State.READY
    # Junk after an answer is dropped by the next command, not read as its answer.
    core.execute(b"y")
    assert core.data_to_send() == b"y\x04"
    assert feed(core, b"OK\x04\x04>", split) == [Finished(b"", b"")]


@SPLITS
@pytest.mark.parametrize(
    "board_says",
    [
        b"MPY: soft reboot\r\n" + BANNER,
        b"OK\r\nMPY: soft reboot\r\nboot.py says hi\r\n" + BANNER,
    ],
)
def test_soft_reset_comes_back_at_the_raw_prompt(board_says: bytes, split: str) -> None:
    core = ready()
    core.soft_reset()
    assert core.data_to_send() == b"\x04"
    assert feed(core, board_says[:-1], split) == []
    assert feed(core, board_says[-1:], split) == [Rebooted()]
    assert core.state is State.READY


def test_an_answer_past_the_limit_is_an_error() -> None:
    core = ready(raw_paste=False, max_output=10)
    core.execute(b"x")
    core.data_to_send()
    core.receive_data(b"OK0123456789")
    with pytest.raises(ReplError, match="exceeds 10 bytes"):
        core.receive_data(b"A")


@pytest.mark.parametrize(
    ("command", "state"),
    [("execute", State.UNKNOWN), ("soft_reset", State.ENTERING), ("execute", State.STDOUT)],
)
def test_commands_out_of_turn_are_refused(command: str, state: State) -> None:
    core = RawReplCore()
    core.state = state
    run = core.execute if command == "execute" else lambda _: core.soft_reset()
    with pytest.raises(ReplError, match="cannot"):
        run(b"1")


@pytest.mark.parametrize(
    ("traceback", "last_line", "errno"),
    [
        (OK_TRACEBACK.decode(), "ZeroDivisionError: divide by zero", None),
        ("Traceback:\nOSError: [Errno 28] ENOSPC\n", "OSError: [Errno 28] ENOSPC", 28),
        ("Traceback:\nOSError: 2\n", "OSError: 2", 2),
        ("", "an error with no traceback", None),
    ],
)
def test_board_error_carries_the_traceback(
    traceback: str, last_line: str, errno: int | None
) -> None:
    error = BoardError(traceback)
    assert str(error).startswith(f"the board raised {last_line}")
    assert error.traceback == traceback.strip()
    assert error.errno == errno


# -- properties ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=30))
def test_output_parser_never_fails_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    """Whatever a board (or line noise) sends while a command runs, the core
    either waits, answers with a Finished event, or raises ReplError for an
    answer too long: nothing else."""
    core = ready(raw_paste=False, max_output=256)
    core.execute(b"x")
    core.data_to_send()
    core.receive_data(b"OK")
    events: list[Event] = []
    at = 0
    try:
        for cut in [*cuts, len(data)]:
            core.receive_data(data[at : at + cut])
            at += cut
            while (event := core.next_event()) is not None:
                events.append(event)
    except ReplError:
        assert len(data) > 256
        return
    if events:
        (finished,) = events
        assert isinstance(finished, Finished)
        assert b"\x04" not in finished.stdout + finished.stderr
        assert data.startswith(finished.stdout + b"\x04" + finished.stderr + b"\x04")
    else:
        assert data.count(b"\x04") < 2 or b">" not in data.split(b"\x04", 2)[2]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["enter", "negotiate", "paste", "reset"]),
    st.binary(max_size=300),
)
def test_no_state_fails_on_arbitrary_bytes(stage: str, data: bytes) -> None:
    core = RawReplCore(max_output=1024)
    core.enter()
    if stage != "enter":
        core.receive_data(BANNER)
        if stage == "reset":
            core.soft_reset()
        else:
            core.execute(b"print(1)" * 10)
            core.data_to_send()
            if stage == "paste":
                core.receive_data(b"R\x01\x08\x00")
    core.receive_data(data)  # shorter than max_output: no error at all
    core.data_to_send()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 20), max_size=40), st.lists(st.integers(1, 20), max_size=40))
def test_any_split_of_a_transcript_gives_the_same_events(
    enter_cuts: list[int], answer_cuts: list[int]
) -> None:
    entering = b"\r\n>>> junk" + BANNER
    answer = b"R\x01\x10\x00\x01\x01\x01\x04" + b"out\r\n\x04" + OK_TRACEBACK + b"\x04>"

    def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
        found, at = [], 0
        for cut in cuts:
            found.append(data[at : at + cut])
            at += cut
        return [*found, data[at:]]

    def run(enter_cuts: list[int], answer_cuts: list[int]) -> list[Event]:
        core = RawReplCore()
        core.enter()
        events = []
        for data, cuts in ((entering, enter_cuts), (answer, answer_cuts)):
            for piece in pieces(data, cuts):
                core.receive_data(piece)
                core.data_to_send()
                while (event := core.next_event()) is not None:
                    events.append(event)
                    if isinstance(event, Entered):
                        core.execute(b"print('out')\n1/0")
        return events

    expected = [Entered(), Finished(b"out\r\n", OK_TRACEBACK)]
    assert run(enter_cuts, answer_cuts) == run([], []) == expected


# -- the transport's errors a person can act on -------------------------------


def test_a_missing_port_says_so() -> None:
    with pytest.raises(PortError, match=r"no port /dev/ttyNOSUCH0: is the board plugged in"):
        RawRepl("/dev/ttyNOSUCH0")


def test_a_port_where_nothing_answers_says_to_flash_micropython() -> None:
    import os

    controller, device = os.openpty()  # a port with nothing behind it
    try:
        with RawRepl(os.ttyname(device)) as repl, pytest.raises(NoMicroPython) as caught:
            repl.enter(timeout_s=0.3)
        assert "--micropython image.bin" in str(caught.value)
    finally:
        os.close(device)
        os.close(controller)
