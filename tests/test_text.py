"""What a student's code can put into a message the grader shows: printable, one line."""

from backprop_ninja.classroom.status import FAILED, GRADED, NotebookResult
from backprop_ninja.text import one_line, printable


def test_escape_sequences_and_control_characters_are_removed():
    hostile = "ok \x1b[2J\x1b[31mred\x1b[0m \x1b]0;new title\x07 \u202eevil\x00\x08"
    assert printable(hostile) == "ok red  evil"
    assert one_line("a\r\n\tb\x1b[1A") == "a b"


def test_notes_and_reasons_reach_the_table_printable():
    graded = NotebookResult("nb", GRADED, notes=["\x1b[2Jcleared"], withdrawn={"t": "\x07bell"})
    failed = NotebookResult("nb", FAILED, reason="bad \x1b[31mred")
    assert graded.messages() == ["cleared", "t: points withdrawn — bell"]
    assert failed.messages() == ["NOT GRADED (0 points): bad red"]
