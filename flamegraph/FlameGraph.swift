public enum FlameGraph {}
