# IPython kernel configuration of DLaaS environments, installed as <environment>/etc/ipython/ipython_kernel_config.py
# (local venvs) or /etc/ipython/ipython_kernel_config.py (images): every Python kernel loads the kernel side of the
# Rucio sidebar's "Add to Notebook", so attached DIDs arrive as variables without a %load_ext by hand. A user's own
# profile (~/.ipython/profile_default/ipython_kernel_config.py) is read after this file and may add extensions.
c = get_config()  # noqa: F821 - provided by IPython when it loads this file
c.InteractiveShellApp.extensions.append("rucio_jupyterlab.kernels.ipython")
