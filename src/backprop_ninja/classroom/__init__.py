"""The grading pipeline's old name, kept so that ``python -m backprop_ninja.classroom …`` still
works for scripts written against it. The pipeline is ``backprop_ninja.grading``."""
