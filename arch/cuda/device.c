// SPDX-License-Identifier: MIT
/*
 * The device registry: what each GPU is (name, compute capability, SMs,
 * memory, L2, shared memory, PCI bus id) and where it sits (the NUMA node
 * and CPUs nearest it, from the topology).
 */
#include <stdio.h>
#include <string.h>

#include <internal/cuda.h>
#include <internal/err.h>
#include <internal/log.h>

static int dev_attr(const struct asam_cuda_driver *drv, CUdevice dev,
		    CUdevice_attribute a, const char *name, int *out)
{
	char what[96];
	CUresult r = drv->cuDeviceGetAttribute(out, a, dev);

	if (r == CUDA_SUCCESS)
		return 0;
	snprintf(what, sizeof(what), "cuDeviceGetAttribute(%s)", name);
	return asam_cuda_err(r, what);
}

#define DEV_ATTR(drv, dev, a, out) \
	dev_attr(drv, dev, CU_DEVICE_ATTRIBUTE_##a, #a, out)

static void device_locality(const struct asam_cuda_driver *drv,
			    const struct asam_topo *topo,
			    struct asam_cuda_device *d)
{
	const struct asam_topo_gpu *g = asam_topo_gpu_find(topo, d->pci_bus_id);
	int node;

	d->numa_node = -1;
	cpuset_zero(&d->cpus);
	if (g) {
		d->numa_node = g->numa_node;
		d->cpus = g->cpus;
	} else if (topo) {
		asam_topo_pci_locality(topo, d->pci_bus_id, &d->numa_node,
				       &d->cpus);
	}
	/* the driver knows too (CUDA 12.2+); ask only when we do not */
	if (d->numa_node < 0 &&
	    drv->cuDeviceGetAttribute(&node, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID,
				      d->dev) == CUDA_SUCCESS && node >= 0)
		d->numa_node = node;
}

int asam_cuda_device_query(const struct asam_cuda_driver *drv, int ordinal,
			   const struct asam_topo *topo,
			   struct asam_cuda_device *d)
{
	char raw[32];
	size_t mem;
	CUresult r;
	int ret;

	memset(d, 0, sizeof(*d));
	d->drv = drv;
	d->ordinal = ordinal;
	r = drv->cuDeviceGet(&d->dev, ordinal);
	if (r != CUDA_SUCCESS)
		return asam_cuda_err(r, "cuDeviceGet");
	r = drv->cuDeviceGetName(d->name, sizeof(d->name), d->dev);
	if (r != CUDA_SUCCESS)
		return asam_cuda_err(r, "cuDeviceGetName");
	ret = DEV_ATTR(drv, d->dev, COMPUTE_CAPABILITY_MAJOR, &d->cc_major) ?:
	      DEV_ATTR(drv, d->dev, COMPUTE_CAPABILITY_MINOR, &d->cc_minor) ?:
	      DEV_ATTR(drv, d->dev, MULTIPROCESSOR_COUNT, &d->sm_count) ?:
	      DEV_ATTR(drv, d->dev, MAX_SHARED_MEMORY_PER_BLOCK,
		       &d->smem_per_block) ?:
	      DEV_ATTR(drv, d->dev, MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
		       &d->smem_per_block_optin) ?:
	      DEV_ATTR(drv, d->dev, L2_CACHE_SIZE, &d->l2_bytes) ?:
	      DEV_ATTR(drv, d->dev, MAX_THREADS_PER_BLOCK,
		       &d->max_threads_per_block) ?:
	      DEV_ATTR(drv, d->dev, WARP_SIZE, &d->warp_size);
	if (ret)
		return ret;
	r = drv->cuDeviceTotalMem(&mem, d->dev);
	if (r != CUDA_SUCCESS)
		return asam_cuda_err(r, "cuDeviceTotalMem");
	d->total_mem = mem;
	r = drv->cuDeviceGetPCIBusId(raw, sizeof(raw), d->dev);
	if (r != CUDA_SUCCESS)
		return asam_cuda_err(r, "cuDeviceGetPCIBusId");
	if (asam_pci_bus_id_normalize(raw, d->pci_bus_id, sizeof(d->pci_bus_id)))
		return asam_err(-EIO, "cuda:%d: PCI bus id \"%s\" is not D:B:D.F",
				ordinal, raw);
	device_locality(drv, topo, d);
	return 0;
}

int asam_cuda_device_enter(const struct asam_cuda_device *d)
{
	return asam_cuda_err(d->drv->cuCtxSetCurrent(d->ctx), "cuCtxSetCurrent");
}

int asam_cuda_module_load(struct asam_cuda_device *d, const void *image,
			  CUmodule *mod)
{
	int ret = asam_cuda_device_enter(d);

	if (ret)
		return ret;
	return asam_cuda_err(d->drv->cuModuleLoadData(mod, image),
			     "cuModuleLoadData");
}

int asam_cuda_enumerate(const struct asam_topo *topo, struct asam_gpu_info *out,
			int max)
{
	const struct asam_cuda_driver *drv = asam_cuda_driver_get();
	struct asam_cuda_device d;
	int i, count = 0, ret;

	if (IS_ERR(drv))
		return PTR_ERR(drv);
	ret = asam_cuda_err(drv->cuDeviceGetCount(&count), "cuDeviceGetCount");
	if (ret)
		return ret;
	for (i = 0; i < count && i < max; i++) {
		struct asam_gpu_info *g = &out[i];

		ret = asam_cuda_device_query(drv, i, topo, &d);
		if (ret)
			return ret;
		memset(g, 0, sizeof(*g));
		g->ordinal = i;
		memcpy(g->name, d.name, sizeof(g->name));
		g->cc_major = d.cc_major;
		g->cc_minor = d.cc_minor;
		g->sm_count = d.sm_count;
		g->total_mem = d.total_mem;
		g->l2_bytes = d.l2_bytes;
		g->smem_per_block_optin = d.smem_per_block_optin;
		memcpy(g->pci_bus_id, d.pci_bus_id, sizeof(g->pci_bus_id));
		g->numa_node = d.numa_node;
		g->cpus = d.cpus;
		g->driver_version = drv->version;
	}
	return i;
}
