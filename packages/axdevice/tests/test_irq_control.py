from axdevice import IrqLine, NullIrqLine, RecordingIrqLine, RecordingVmControl, VmControl


def test_recording_irq_line_records_levels_and_pulses() -> None:
    line = RecordingIrqLine()
    assert isinstance(line, IrqLine)
    line.set_level(True)
    line.pulse()
    line.set_level(False)
    assert line.events == [("level", True), ("pulse",), ("level", False)]
    assert line.level is False
    assert line.pulses == 1
    line.clear()
    assert line.events == [] and line.pulses == 0


def test_null_irq_line_is_an_irq_line() -> None:
    line = NullIrqLine()
    assert isinstance(line, IrqLine)
    line.set_level(True)
    line.pulse()


def test_recording_vm_control() -> None:
    control = RecordingVmControl()
    assert isinstance(control, VmControl)
    control.shutdown(3)
    control.reset()
    control.shutdown(0)
    assert control.shutdowns == [3, 0]
    assert control.resets == 1
